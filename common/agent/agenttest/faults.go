package agenttest

import "sync"

// Faults is what the fake collectors of hva and sta share: the error each
// verb is told to answer. Embed it; its zero value answers no errors.
type Faults struct {
	mu     sync.Mutex
	inject map[string]error // verb -> error
}

// InjectError makes every later call of verb fail with err (nil clears it).
func (f *Faults) InjectError(verb string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.inject, verb)
		return
	}
	if f.inject == nil {
		f.inject = map[string]error{}
	}
	f.inject[verb] = err
}

// Injected is the error verb is to answer, if any.
func (f *Faults) Injected(verb string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inject[verb]
}
