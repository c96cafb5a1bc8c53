package proto

// Who serves and who may call each RPC endpoint (by base name). Under mutual
// TLS a client refuses a server of another role and a server refuses a
// caller of another role; with only the shared token every cluster member
// may call everything. Managers hand jobs to agents and agents report to the
// managers' collectors; agents never call each other over RPC.
var endpointAccess = map[string]struct{ servers, callers []string }{
	EndpointScheduler:          {[]string{RoleScheduler}, []string{RoleManager}},
	EndpointHvaHandle:          {[]string{RoleHva}, []string{RoleManager}},
	EndpointLocalStoreHandle:   {[]string{RoleHva}, []string{RoleManager}},
	EndpointMigrationHandle:    {[]string{RoleHva}, []string{RoleManager}},
	EndpointWindowsHandle:      {[]string{RoleHva}, []string{RoleManager}},
	EndpointStaHandle:          {[]string{RoleSta}, []string{RoleManager}},
	EndpointJobControl:         {[]string{RoleHva, RoleSta, RoleScheduler}, []string{RoleManager}},
	EndpointHvaCollector:       {[]string{RoleManager}, []string{RoleHva, RoleSta}}, // sta: create_volume_and_run_instance reads and fails instances
	EndpointStaCollector:       {[]string{RoleManager}, []string{RoleHva, RoleSta}},
	EndpointJobCollector:       {[]string{RoleManager}, []string{RoleHva, RoleSta, RoleScheduler}},
	EndpointSchedulerCollector: {[]string{RoleManager}, []string{RoleScheduler}},
}

// ServingRoles are the roles of the daemons that serve endpoint; nil for an
// endpoint not in the table (a client then refuses to call it under TLS).
func ServingRoles(endpoint string) []string { return endpointAccess[EndpointBase(endpoint)].servers }

// CallerRoles are the roles that may call endpoint; nil for an endpoint not
// in the table (a server then refuses every caller under TLS).
func CallerRoles(endpoint string) []string { return endpointAccess[EndpointBase(endpoint)].callers }
