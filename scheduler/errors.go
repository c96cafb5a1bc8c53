package scheduler

import (
	"errors"
	"fmt"
)

// ErrorKind is the class of a scheduling failure. The names are the Ruby
// exception classes of the original, so job failure messages read the same.
type ErrorKind int

// Error kinds.
const (
	// KindHostNode: no host node fits (HostNodeSchedulingError).
	KindHostNode ErrorKind = iota + 1
	// KindStorageNode: no storage node fits (StorageNodeSchedulingError).
	KindStorageNode
	// KindNetwork: the network request cannot be satisfied (NetworkSchedulingError).
	KindNetwork
	// KindIPAddress: a requested address is unusable (IPAddressSchedulerError).
	KindIPAddress
	// KindMacAddress: no MAC address can be given (MacAddressSchedulerError).
	KindMacAddress
	// KindOutOfIPRange: a network has no free dynamic address left (OutOfIpRange).
	// Kept apart from IPAddress because network schedulers that try several
	// networks move on to the next network on exactly this kind.
	KindOutOfIPRange
	// KindInvalidUUID: an id is malformed for its resource type (InvalidUUIDError).
	KindInvalidUUID
	// KindConfig: a scheduler configuration or option is wrong (ArgumentError at
	// config load in the original).
	KindConfig
)

var kindNames = [...]string{
	KindHostNode:     "HostNodeSchedulingError",
	KindStorageNode:  "StorageNodeSchedulingError",
	KindNetwork:      "NetworkSchedulingError",
	KindIPAddress:    "IPAddressSchedulerError",
	KindMacAddress:   "MacAddressSchedulerError",
	KindOutOfIPRange: "OutOfIpRange",
	KindInvalidUUID:  "InvalidUUIDError",
	KindConfig:       "ArgumentError",
}

func (k ErrorKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("ErrorKind(%d)", int(k))
}

// Reason refines a kind where callers must tell causes apart: the API maps the
// reasons of a manual MAC or IP address to distinct 12.03 error codes.
type Reason int

// Reasons. ReasonNone is the common case.
const (
	ReasonNone Reason = iota
	// ReasonInvalidAddress: not a well-formed address (API 174 / 176).
	ReasonInvalidAddress
	// ReasonLeased: the address is already taken (API 175 / 177).
	ReasonLeased
	// ReasonNotInSegment: the IPv4 address lies outside network/prefix (API 178).
	ReasonNotInSegment
	// ReasonNotInRange: outside every MAC range (API 180) or DHCP range (API 181).
	ReasonNotInRange
	// ReasonUnknownNetwork: a named network does not exist (API 129).
	ReasonUnknownNetwork
)

// SchedulingError is every error the algorithms return. Error() is the
// original's message alone; Kind carries the exception class.
type SchedulingError struct {
	Kind   ErrorKind
	Reason Reason
	Msg    string
}

func (e *SchedulingError) Error() string { return e.Msg }

// newErr builds a SchedulingError; a helper so call sites stay one line.
func newErr(k ErrorKind, format string, args ...any) *SchedulingError {
	if len(args) == 0 {
		return &SchedulingError{Kind: k, Msg: format}
	}
	return &SchedulingError{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// reasonErr is newErr with a Reason.
func reasonErr(k ErrorKind, r Reason, format string, args ...any) *SchedulingError {
	e := newErr(k, format, args...)
	e.Reason = r
	return e
}

// KindOf returns the kind of err, 0 when err is not a *SchedulingError.
func KindOf(err error) ErrorKind {
	var se *SchedulingError
	if errors.As(err, &se) {
		return se.Kind
	}
	return 0
}

// IsKind reports whether err is a *SchedulingError of kind k.
func IsKind(err error, k ErrorKind) bool { return err != nil && KindOf(err) == k }
