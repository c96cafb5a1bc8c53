package api

// routes registers every 12.03 route this manager serves. Each resource file
// has one register function; instances and volumes arrive with their issues.
func (a *API) routes() {
	a.registerBackupStorages()
	a.registerBackupObjects()
	a.registerImages()
	a.registerSecurityGroups()
	a.registerSshKeyPairs()
}
