package api

// routes registers every 12.03 route this manager serves. Each resource file
// has one register function; instances and volumes arrive with their issues.
func (a *API) routes() {
	a.registerAccounts()
	a.registerBackupObjects()
	a.registerBackupStorages()
	a.registerDcNetworks()
	a.registerGroups()
	a.registerHostNodes()
	a.registerHostEvacuate()
	a.registerImages()
	a.registerInstances()
	a.registerIPHandles()
	a.registerIPPools()
	a.registerJobs()
	a.registerNetworkVifs()
	a.registerNetworkVifMonitors()
	a.registerNetworks()
	a.registerSecurityGroups()
	a.registerSshKeyPairs()
	a.registerStorageNodes()
	a.registerVolumes()
	a.registerVolumeSnapshots()
}
