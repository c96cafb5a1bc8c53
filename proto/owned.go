package proto

// Owned is a record that belongs to an account (spec §1.4 ownership check).
type Owned interface {
	OwnerID() string
	ServiceTypeName() string
}

func (r *Network) OwnerID() string               { return r.AccountID }
func (r *Network) ServiceTypeName() string       { return r.ServiceType }
func (r *NetworkVif) OwnerID() string            { return r.AccountID }
func (r *NetworkVif) ServiceTypeName() string    { return "" }
func (r *IPPool) OwnerID() string                { return r.AccountID }
func (r *IPPool) ServiceTypeName() string        { return "" }
func (r *IPHandle) OwnerID() string              { return r.AccountID }
func (r *IPHandle) ServiceTypeName() string      { return "" }
func (r *SecurityGroup) OwnerID() string         { return r.AccountID }
func (r *SecurityGroup) ServiceTypeName() string { return r.ServiceType }
func (r *SshKeyPair) OwnerID() string            { return r.AccountID }
func (r *SshKeyPair) ServiceTypeName() string    { return r.ServiceType }
func (r *Image) OwnerID() string                 { return r.AccountID }
func (r *Image) ServiceTypeName() string         { return r.ServiceType }
func (r *BackupObject) OwnerID() string          { return r.AccountID }
func (r *BackupObject) ServiceTypeName() string  { return r.ServiceType }
func (r *Tag) OwnerID() string                   { return r.AccountID }
func (r *Tag) ServiceTypeName() string           { return r.ServiceType }
