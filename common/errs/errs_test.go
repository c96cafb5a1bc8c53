package errs

import (
	"fmt"
	"net/http"
	"testing"
)

func TestWireCodeRoundTrip(t *testing.T) {
	var kinds []Kind
	for k := range apiKinds {
		kinds = append(kinds, k)
	}
	for k := range internalKinds {
		kinds = append(kinds, k)
	}
	seen := map[string]Kind{}
	for _, k := range kinds {
		c := k.WireCode()
		if other, dup := seen[c]; dup {
			t.Errorf("wire code %s used by %s and %s", c, k.Name(), other.Name())
		}
		seen[c] = k
		if got := KindFromCode(c); got != k {
			t.Errorf("KindFromCode(%s.WireCode() = %q) = %s, want %s", k.Name(), c, got.Name(), k.Name())
		}
	}
}

func TestCodeUnchangedForAPI(t *testing.T) {
	// The 12.03 rendering keeps its codes; only the wire form differs.
	for _, tc := range []struct {
		k    Kind
		code string
	}{{NotFound, "100"}, {InvalidBody, "900"}, {Internal, "900"}, {UnknownInstance, "115"}} {
		if got := tc.k.Code(); got != tc.code {
			t.Errorf("%s.Code() = %q, want %q", tc.k.Name(), got, tc.code)
		}
	}
	if got := KindFromCode("100"); got != UnknownUUIDResource {
		t.Errorf("KindFromCode(100) = %s, want UnknownUUIDResource", got.Name())
	}
	if got := KindFromCode("900"); got != Internal {
		t.Errorf("KindFromCode(900) = %s, want InternalError", got.Name())
	}
	if got := KindFromCode("nonsense"); got != Internal {
		t.Errorf("KindFromCode(nonsense) = %s, want InternalError", got.Name())
	}
}

func TestNewKinds(t *testing.T) {
	if got := Unavailable.Status(); got != http.StatusServiceUnavailable {
		t.Errorf("Unavailable.Status() = %d", got)
	}
	if got := Unauthorized.Status(); got != http.StatusUnauthorized {
		t.Errorf("Unauthorized.Status() = %d", got)
	}
	err := fmt.Errorf("ctx: %w", New(Unavailable, "agent down"))
	if !Is(err, Unavailable) {
		t.Errorf("Is(%v, Unavailable) = false", err)
	}
}

func TestRateLimitedRendersAsQuotaExceeded(t *testing.T) {
	if RateLimited.Status() != http.StatusTooManyRequests || RateLimited.Code() != "162" || RateLimited.Name() != "ExceedQuotaLimit" {
		t.Errorf("RateLimited = %d %s %s", RateLimited.Status(), RateLimited.Code(), RateLimited.Name())
	}
	if KindFromCode(RateLimited.WireCode()) != RateLimited || KindFromCode("162") != ExceedQuotaLimit {
		t.Error("RateLimited does not round-trip the wire, or took 162 from ExceedQuotaLimit")
	}
}
