package plugin

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/grafana/grafana-plugin-sdk-go/live"
)

// Live channels. A topology view streams on two Grafana Live channels,
// ds/<uid>/topology/<view>/nodes and …/edges, one per frame. <view> names
// the filter and the query's RefID (streamed frames carry it) in one of two
// forms:
//
//   - v1.<base64url of the compact JSON {"q": refId, "f": filter}> when
//     the whole channel fits the SDK's limit (live.ParseChannel: 160
//     characters; [A-Za-z0-9_-/=.] in the path). Any plugin process can
//     serve it: the path carries the view, so a subscription that reaches
//     a process that never ran the query (Grafana HA, a plugin restart)
//     works.
//   - h1.<base64url of 16 bytes of SHA-256 of the same JSON> otherwise: the
//     query registers the view under its hash in this process
//     (channelRegistry). A process that does not know the hash refuses
//     the subscription (NotFound, and a log line saying why); re-running
//     the query (reloading the dashboard) registers it again.
const (
	channelRoot   = "topology"
	formEmbedded  = "v1."
	formHashed    = "h1."
	maxRegistered = 4096 // hashed views a process remembers (least recently used go)
)

// Frame kinds at the end of a channel path.
const (
	kindNodes = "nodes"
	kindEdges = "edges"
)

// channelView is what a channel streams: a view, with the RefID its
// frames carry.
type channelView struct {
	RefID  string     `json:"q"`
	Filter topoFilter `json:"f"`
}

func (cv channelView) json() []byte {
	b, _ := json.Marshal(cv)
	return b
}

// hashOf is the h1. form of cv's JSON.
func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// channelPaths are a view's two channel paths (the part after
// ds/<uid>/), embedded when they fit, else hashed; hashed says which.
func channelPaths(uid string, cv channelView) (nodes, edges string, hashed bool) {
	raw := cv.json()
	for _, form := range []string{formEmbedded + base64.RawURLEncoding.EncodeToString(raw), formHashed + hashOf(raw)} {
		nodes, edges = channelRoot+"/"+form+"/"+kindNodes, channelRoot+"/"+form+"/"+kindEdges
		// The longer of the two decides.
		if _, err := live.ParseChannel(channelID(uid, nodes)); err == nil {
			return nodes, edges, strings.HasPrefix(form, formHashed)
		}
	}
	return nodes, edges, true // a UID too long for any channel: ParseChannel fails at the caller
}

func channelID(uid, path string) string {
	return live.Channel{Scope: live.ScopeDatasource, Namespace: uid, Path: path}.String()
}

var errUnknownView = errors.New("unknown view")

// parseChannelPath reads a path made by channelPaths. A hashed path is
// looked up in reg; errUnknownView (wrapped) says it is not there.
func parseChannelPath(path string, reg *channelRegistry) (channelView, string, error) {
	parts := strings.Split(path, "/")
	if len(parts) != 3 || parts[0] != channelRoot || (parts[2] != kindNodes && parts[2] != kindEdges) {
		return channelView{}, "", fmt.Errorf("unknown channel path %q (want %s/<view>/%s or /%s)", path, channelRoot, kindNodes, kindEdges)
	}
	form := parts[1]
	switch {
	case strings.HasPrefix(form, formEmbedded):
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(form, formEmbedded))
		if err != nil {
			return channelView{}, "", fmt.Errorf("channel path %q: view is not base64url: %v", path, err)
		}
		var cv channelView
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cv); err != nil {
			return channelView{}, "", fmt.Errorf("channel path %q: not a view: %v", path, err)
		}
		if err := cv.Filter.validate(); err != nil {
			return channelView{}, "", fmt.Errorf("channel path %q: %v", path, err)
		}
		if !bytes.Equal(cv.json(), raw) {
			return channelView{}, "", fmt.Errorf("channel path %q: view is not in its canonical form", path)
		}
		return cv, parts[2], nil
	case strings.HasPrefix(form, formHashed):
		cv, ok := reg.lookup(strings.TrimPrefix(form, formHashed))
		if !ok {
			return channelView{}, "", fmt.Errorf("channel path %q: %w: its view was registered by a topology query this plugin process has not run "+
				"(another Grafana server ran it, or the plugin restarted since); the panel's next query registers it again", path, errUnknownView)
		}
		return cv, parts[2], nil
	}
	return channelView{}, "", fmt.Errorf("channel path %q: unknown view form", path)
}

// channelRegistry remembers the views of hashed channel paths, the most
// recently used maxRegistered. Safe for concurrent use.
type channelRegistry struct {
	mu     sync.Mutex
	byHash map[string]*list.Element // → channelView
	lru    list.List                // front: most recent
	max    int
}

type registered struct {
	hash string
	view channelView
}

func newChannelRegistry(max int) *channelRegistry {
	return &channelRegistry{byHash: map[string]*list.Element{}, max: max}
}

func (r *channelRegistry) register(cv channelView) {
	h := hashOf(cv.json())
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byHash[h]; ok {
		r.lru.MoveToFront(e)
		return
	}
	r.byHash[h] = r.lru.PushFront(registered{h, cv})
	for r.lru.Len() > r.max {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.byHash, old.Value.(registered).hash)
	}
}

func (r *channelRegistry) lookup(hash string) (channelView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byHash[hash]
	if !ok {
		return channelView{}, false
	}
	r.lru.MoveToFront(e)
	return e.Value.(registered).view, true
}
