package api

// routes registers every 12.03 route this manager serves. Each resource file
// has one register function; instances and volumes arrive with their issues.
func (a *API) routes() {
	a.registerBackupStorages()
	a.registerDcNetworks()
	a.registerNetworks()
	a.registerNetworkVifs()
	a.registerIPPools()
	a.registerIPHandles()
}
