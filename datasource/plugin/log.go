package plugin

import (
	"context"
	"log/slog"

	sdklog "github.com/grafana/grafana-plugin-sdk-go/backend/log"
)

// sdkHandler bridges log/slog (which pkg/broker logs to) to the SDK's logger,
// whose output Grafana collects from the plugin process.
type sdkHandler struct {
	attrs  []any
	prefix string // group prefix, "a.b."
}

func newSDKHandler() slog.Handler { return &sdkHandler{} }

func (h *sdkHandler) Enabled(_ context.Context, l slog.Level) bool {
	switch sdklog.DefaultLogger.Level() {
	case sdklog.Debug, sdklog.Trace, sdklog.NoLevel:
		return true
	case sdklog.Info:
		return l >= slog.LevelInfo
	case sdklog.Warn:
		return l >= slog.LevelWarn
	default:
		return l >= slog.LevelError
	}
}

func (h *sdkHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = appendAttr(args, h.prefix, a)
		return true
	})
	l := sdklog.DefaultLogger
	switch {
	case r.Level >= slog.LevelError:
		l.Error(r.Message, args...)
	case r.Level >= slog.LevelWarn:
		l.Warn(r.Message, args...)
	case r.Level >= slog.LevelInfo:
		l.Info(r.Message, args...)
	default:
		l.Debug(r.Message, args...)
	}
	return nil
}

func appendAttr(args []any, prefix string, a slog.Attr) []any {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			args = appendAttr(args, p, g)
		}
		return args
	}
	if a.Key == "" {
		return args
	}
	return append(args, prefix+a.Key, v.Any())
}

func (h *sdkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &sdkHandler{attrs: append([]any(nil), h.attrs...), prefix: h.prefix}
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return n
}

func (h *sdkHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &sdkHandler{attrs: h.attrs, prefix: h.prefix + name + "."}
}
