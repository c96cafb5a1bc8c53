// Package errs is the one error type of vdc. An Error carries a Kind; the Kind
// decides the HTTP status, the 12.03 error name and code, and the RPC code, so
// every layer returns errors and exactly one place renders them.
package errs

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Kind classifies an error. Values 100–201 are the 12.03 API error codes; the
// values from 1000 on are internal classes with no 12.03 code of their own.
type Kind int

// Internal kinds.
const (
	// Internal is any unexpected failure: 500, message hidden from clients.
	Internal Kind = 1000 + iota
	// NoLeader: the cluster has no leader right now (503 with Retry-After).
	NoLeader
	// Conflict: a compare-and-set in the state machine lost a race; callers retry.
	Conflict
	// Timeout: the operation did not finish in time (504).
	Timeout
	// InvalidBody: the JSON/YAML body did not parse (400, plain text body).
	InvalidBody
	// TooLarge: the request body is over the configured limit (413).
	TooLarge
	// NotFound is a plain not-found for internal interfaces (RPC, state reads).
	NotFound
	// Unavailable: the peer could not be reached or is shutting down (503);
	// the call may or may not have been delivered, so callers retry it.
	Unavailable
	// Unauthorized: the RPC caller presented no or a wrong credential (401).
	Unauthorized
	// RateLimited: the caller sent more requests than its rate allows (429).
	// The 12.03 API had no rate limit; its document carries the closest
	// 12.03 error, ExceedQuotaLimit (code 162), with status 429.
	RateLimited
)

// 12.03 API kinds; the value is the API code.
const (
	UnknownUUIDResource             Kind = 100
	UnknownMember                   Kind = 101
	InvalidCredentialHeaders        Kind = 102
	InvalidRequestCredentials       Kind = 103
	DisabledAccount                 Kind = 104
	OperationNotPermitted           Kind = 105
	UndefinedVolumeSize             Kind = 106
	StorageNodeNotPermitted         Kind = 107
	UnknownStorageNode              Kind = 108
	OutOfDiskSpace                  Kind = 109
	DatabaseError                   Kind = 110
	UndefinedVolumeID               Kind = 111
	InvalidDeleteRequest            Kind = 112
	UnknownVolume                   Kind = 113
	UnknownHostNode                 Kind = 114
	UnknownInstance                 Kind = 115
	UndefindVolumeSnapshotID        Kind = 116
	UnknownVolumeSnapshot           Kind = 117
	UndefinedRequiredParameter      Kind = 118
	InvalidVolumeSize               Kind = 119
	OutOfHostCapacity               Kind = 120
	UnknownSshKeyPair               Kind = 121
	UndefinedStorageNodeID          Kind = 122
	DetachVolumeFailure             Kind = 123
	AttachVolumeFailure             Kind = 124
	InvalidInstanceState            Kind = 125
	DuplicateHostname               Kind = 126
	UnknownImage                    Kind = 127
	UnknownInstanceSpec             Kind = 128
	UnknownNetwork                  Kind = 129
	OutOfNetworkCapacity            Kind = 130
	InvalidVolumeSnapshotState      Kind = 131
	UndefinedSecurityGroup          Kind = 132
	UnknownSecurityGroup            Kind = 133
	SecurityGroupNotPermitted       Kind = 134
	DuplicatedSecurityGroup         Kind = 135
	DuplicateSshKeyName             Kind = 136
	InvalidImageID                  Kind = 137
	InvalidInstanceSpec             Kind = 138
	UndefinedInstanceID             Kind = 139
	InvalidVolumeState              Kind = 140
	InvalidHostNodeID               Kind = 141
	InvalidSecurityGroupRule        Kind = 142
	InvalidParameter                Kind = 143
	UnknownNetworkVif               Kind = 144
	NetworkVifAlreadyAttached       Kind = 145
	NetworkVifNicNotFound           Kind = 146
	NetworkVifNotAttached           Kind = 147
	UndefinedNetworkID              Kind = 148
	UndefinedLoadBalancerID         Kind = 149
	UnknowLoadBalancerID            Kind = 150
	DuplicateNetworkVif             Kind = 151
	UndefinedImageID                Kind = 152
	UnknownBackupStorage            Kind = 153
	DestroyedUUIDResource           Kind = 154
	UndefinedBackupObject           Kind = 155
	UnknownBackupObject             Kind = 156
	InvalidBackupObjectState        Kind = 157
	ExistsRegisteredInstance        Kind = 158
	InvalidLoadBalancerState        Kind = 159
	InvalidLoadBalancerPort         Kind = 160
	InvalidLoadBalancerAlgorithm    Kind = 161
	ExceedQuotaLimit                Kind = 162
	UnknownDcNetwork                Kind = 163
	NetworkNotPermitted             Kind = 164
	DcNetworkNotPermitted           Kind = 165
	InvalidLoadBalancerPrivateKey   Kind = 166
	InvalidLoadBalancerPublicKey    Kind = 167
	EncryptionAlgorithmNotSupported Kind = 168
	NetworkInvalidAddress           Kind = 169
	NetworkVifInvalidAddress        Kind = 170
	MessagingFailed                 Kind = 171
	UnknownNetworkService           Kind = 172
	InvalidSshPublicKey             Kind = 173
	InvalidMacAddress               Kind = 174
	DuplicateMacAddress             Kind = 175
	InvalidIPAddress                Kind = 176
	DuplicateIPAddress              Kind = 177
	IPAddressNotInSegment           Kind = 178
	IncompatibleHostNode            Kind = 179
	MacNotInRange                   Kind = 180
	IpNotInDhcpRange                Kind = 181
	InvalidBackupStorage            Kind = 182
	UnknownIpHandle                 Kind = 183
	UnknownIpPool                   Kind = 184
	IpHandleInUse                   Kind = 185
	InvalidLoadBalancerAllowList    Kind = 186
	UnknownResourceLabel            Kind = 187
	InvalidLoadBalancerProtocol     Kind = 188
	InvalidLoadBalancerHttpChkPath  Kind = 189
	NetworkNotInDcNetwork           Kind = 190
	LoadBalancerNotPermitted        Kind = 191
	InvalidLoadBalancerInstancePort Kind = 192
	InvalidLoadBalancerInstanceProt Kind = 193
	DuplicateLoadBalancerPort       Kind = 194
	InvalidLoadBalancerSpec         Kind = 195
	UnknownResourceID               Kind = 196
	UnknownMetricName               Kind = 197
	UnknownParams                   Kind = 198
	UnknownEvaluationPeriods        Kind = 199
	UnknownNotificationPeriods      Kind = 200
	PasswordNotInDatabase           Kind = 201
)

type kindInfo struct {
	name   string
	status int
}

// apiKinds is the spec's error table (§1.10): name and HTTP status per code.
var apiKinds = map[Kind]kindInfo{
	100: {"UnknownUUIDResource", 404}, 101: {"UnknownMember", 400},
	102: {"InvalidCredentialHeaders", 400}, 103: {"InvalidRequestCredentials", 400},
	104: {"DisabledAccount", 403}, 105: {"OperationNotPermitted", 403},
	106: {"UndefinedVolumeSize", 400}, 107: {"StorageNodeNotPermitted", 403},
	108: {"UnknownStorageNode", 404}, 109: {"OutOfDiskSpace", 400},
	110: {"DatabaseError", 400}, 111: {"UndefinedVolumeID", 400},
	112: {"InvalidDeleteRequest", 400}, 113: {"UnknownVolume", 404},
	114: {"UnknownHostNode", 404}, 115: {"UnknownInstance", 404},
	116: {"UndefindVolumeSnapshotID", 400}, 117: {"UnknownVolumeSnapshot", 404},
	118: {"UndefinedRequiredParameter", 400}, 119: {"InvalidVolumeSize", 400},
	120: {"OutOfHostCapacity", 400}, 121: {"UnknownSshKeyPair", 404},
	122: {"UndefinedStorageNodeID", 400}, 123: {"DetachVolumeFailure", 400},
	124: {"AttachVolumeFailure", 400}, 125: {"InvalidInstanceState", 400},
	126: {"DuplicateHostname", 400}, 127: {"UnknownImage", 404},
	128: {"UnknownInstanceSpec", 404}, 129: {"UnknownNetwork", 404},
	130: {"OutOfNetworkCapacity", 400}, 131: {"InvalidVolumeSnapshotState", 400},
	132: {"UndefinedSecurityGroup", 404}, 133: {"UnknownSecurityGroup", 404},
	134: {"SecurityGroupNotPermitted", 400}, 135: {"DuplicatedSecurityGroup", 400},
	136: {"DuplicateSshKeyName", 400}, 137: {"InvalidImageID", 400},
	138: {"InvalidInstanceSpec", 400}, 139: {"UndefinedInstanceID", 404},
	140: {"InvalidVolumeState", 400}, 141: {"InvalidHostNodeID", 400},
	142: {"InvalidSecurityGroupRule", 400}, 143: {"InvalidParameter", 400},
	144: {"UnknownNetworkVif", 404}, 145: {"NetworkVifAlreadyAttached", 500},
	146: {"NetworkVifNicNotFound", 500}, 147: {"NetworkVifNotAttached", 500},
	148: {"UndefinedNetworkID", 404}, 149: {"UndefinedLoadBalancerID", 404},
	150: {"UnknowLoadBalancerID", 404}, 151: {"DuplicateNetworkVif", 400},
	152: {"UndefinedImageID", 404}, 153: {"UnknownBackupStorage", 404},
	154: {"DestroyedUUIDResource", 404}, 155: {"UndefinedBackupObject", 404},
	156: {"UnknownBackupObject", 404}, 157: {"InvalidBackupObjectState", 400},
	158: {"ExistsRegisteredInstance", 400}, 159: {"InvalidLoadBalancerState", 400},
	160: {"InvalidLoadBalancerPort", 400}, 161: {"InvalidLoadBalancerAlgorithm", 400},
	162: {"ExceedQuotaLimit", 400}, 163: {"UnknownDcNetwork", 404},
	164: {"NetworkNotPermitted", 400}, 165: {"DcNetworkNotPermitted", 400},
	166: {"InvalidLoadBalancerPrivateKey", 400}, 167: {"InvalidLoadBalancerPublicKey", 400},
	168: {"EncryptionAlgorithmNotSupported", 400}, 169: {"NetworkInvalidAddress", 500},
	170: {"NetworkVifInvalidAddress", 500}, 171: {"MessagingFailed", 500},
	172: {"UnknownNetworkService", 404}, 173: {"InvalidSshPublicKey", 400},
	174: {"InvalidMacAddress", 400}, 175: {"DuplicateMacAddress", 400},
	176: {"InvalidIPAddress", 400}, 177: {"DuplicateIPAddress", 400},
	178: {"IPAddressNotInSegment", 400}, 179: {"IncompatibleHostNode", 400},
	180: {"MacNotInRange", 400}, 181: {"IpNotInDhcpRange", 400},
	182: {"InvalidBackupStorage", 400}, 183: {"UnknownIpHandle", 404},
	184: {"UnknownIpPool", 404}, 185: {"IpHandleInUse", 404},
	186: {"InvalidLoadBalancerAllowList", 400}, 187: {"UnknownResourceLabel", 404},
	188: {"InvalidLoadBalancerProtocol", 400}, 189: {"InvalidLoadBalancerHttpChkPath", 400},
	190: {"NetworkNotInDcNetwork", 404}, 191: {"LoadBalancerNotPermitted", 404},
	192: {"InvalidLoadBalancerInstancePort", 404}, 193: {"InvalidLoadBalancerInstanceProtocol", 404},
	194: {"DuplicateLoadBalancerPort", 400}, 195: {"InvalidLoadBalancerSpec", 400},
	196: {"UnknownResourceID", 400}, 197: {"UnknownMetricName", 400},
	198: {"UnknownParams", 400}, 199: {"UnknownEvaluationPeriods", 400},
	200: {"UnknownNotificationPeriods", 400}, 201: {"PasswordNotInDatabase", 410},
}

var internalKinds = map[Kind]kindInfo{
	Internal:     {"InternalError", http.StatusInternalServerError},
	NoLeader:     {"NoLeader", http.StatusServiceUnavailable},
	Conflict:     {"Conflict", http.StatusConflict},
	Timeout:      {"Timeout", http.StatusGatewayTimeout},
	InvalidBody:  {"InvalidBody", http.StatusBadRequest},
	TooLarge:     {"RequestTooLarge", http.StatusRequestEntityTooLarge},
	NotFound:     {"NotFound", http.StatusNotFound},
	Unavailable:  {"Unavailable", http.StatusServiceUnavailable},
	Unauthorized: {"Unauthorized", http.StatusUnauthorized},
	RateLimited:  {"ExceedQuotaLimit", http.StatusTooManyRequests},
}

func (k Kind) info() kindInfo {
	if i, ok := apiKinds[k]; ok {
		return i
	}
	if i, ok := internalKinds[k]; ok {
		return i
	}
	return internalKinds[Internal]
}

// Name is the error class name without the Ruby namespace.
func (k Kind) Name() string { return k.info().name }

// Status is the HTTP status for the kind.
func (k Kind) Status() int { return k.info().status }

// Code is the 3-digit 12.03 code as the string clients see. Internal kinds have
// codes from 900 on so that every error document still carries a code.
func (k Kind) Code() string {
	if _, ok := apiKinds[k]; ok {
		return strconv.Itoa(int(k))
	}
	switch k {
	case NoLeader:
		return "901"
	case Conflict:
		return "902"
	case Timeout:
		return "903"
	case TooLarge:
		return "904"
	case NotFound:
		return "100"
	case Unavailable:
		return "905"
	case Unauthorized:
		return "906"
	case RateLimited:
		return "162"
	}
	return "900"
}

// WireCode is the code that identifies k exactly when an error crosses RPC.
// It is Code, except for the kinds that render with another kind's code
// (NotFound as 100, InvalidBody as 900, RateLimited as 162): those get codes
// of their own.
func (k Kind) WireCode() string {
	switch k {
	case NotFound:
		return "907"
	case InvalidBody:
		return "908"
	case RateLimited:
		return "909"
	}
	return k.Code()
}

// KindFromCode returns the kind whose WireCode (or Code) is c; it is how an
// error's kind comes back after crossing RPC. Unknown codes are Internal.
func KindFromCode(c string) Kind {
	n, err := strconv.Atoi(c)
	if err == nil {
		if _, ok := apiKinds[Kind(n)]; ok {
			return Kind(n)
		}
	}
	for k := range internalKinds {
		if k.WireCode() == c {
			return k
		}
	}
	return Internal
}

// Error is vdc's error value.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // wrapped cause, if any
}

func (e *Error) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = e.Kind.Name()
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Message is what a client sees: the message, or the class name when empty.
func (e *Error) Message() string {
	if e.Msg == "" {
		return "Dcmgr::Endpoints::" + e.Kind.Name()
	}
	return e.Msg
}

// New returns an error of kind k with a formatted message.
func New(k Kind, format string, args ...any) *Error {
	if len(args) == 0 {
		return &Error{Kind: k, Msg: format}
	}
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k wrapping err.
func Wrap(k Kind, err error, msg string) *Error {
	return &Error{Kind: k, Msg: msg, Err: err}
}

// KindOf returns the kind of err, Internal if it is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err is an *Error of kind k.
func Is(err error, k Kind) bool {
	return err != nil && KindOf(err) == k
}

// As returns err as *Error, wrapping foreign errors as Internal.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: Internal, Err: err}
}
