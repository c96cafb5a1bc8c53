package agent

import (
	"context"
	"log/slog"
)

// JobInfo identifies the job a context belongs to.
type JobInfo struct {
	ID         string
	Endpoint   string
	Verb       string
	ResourceID string
	ParentID   string
	Attempt    int
}

type jobInfoKey struct{}

// ContextWithJob returns ctx carrying j (the agent does this for every job;
// tests of handlers may do it themselves).
func ContextWithJob(ctx context.Context, j JobInfo) context.Context {
	return context.WithValue(ctx, jobInfoKey{}, j)
}

// JobFromContext returns the job ctx belongs to, if any.
func JobFromContext(ctx context.Context) (JobInfo, bool) {
	j, ok := ctx.Value(jobInfoKey{}).(JobInfo)
	return j, ok
}

// ctxHandler adds job_id and resource_id to records logged with a job's
// context, so that everything a job logs can be found by its id.
type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if j, ok := JobFromContext(ctx); ok {
		r = r.Clone()
		r.AddAttrs(slog.String("job_id", j.ID))
		if j.ResourceID != "" {
			r.AddAttrs(slog.String("resource_id", j.ResourceID))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(attrs)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{h.Handler.WithGroup(name)}
}
