// Command go-control-plane is the other side of `npm run bench:xds`: an ADS
// server built from Envoy's own Go control plane (go-control-plane's v3
// snapshot cache and server), driven by the benchmark over stdin/stdout so
// that it serves exactly the resources meshd's XdsServer serves.
//
//	go-control-plane -listen unix:xds.sock     (or -listen 127.0.0.1:0)
//
// stdout, one event per line:
//
//	ready <address>
//	loaded <ms>                          a snapshot file was parsed (not timed below)
//	set <ms>                             Consistent() + SetSnapshot() returned
//	ack <clusters|listeners> <version> <ms since the last set>
//	nack <clusters|listeners> <version> <message>
//	mem <rss bytes> <heap bytes>         after a forced GC returned free memory to the OS
//	error <message>
//
// stdin, one command per line:
//
//	set <node id> <file>   file: {"versions": {"clusters": v, "listeners": v},
//	                                "resources": {"clusters": [Any…], "listeners": [Any…]}}
//	                       each resource in protojson with its "@type"
//	mem
//
// SotW and delta are both served on the one ADS service; Envoy picks.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	// message types the snapshot file may name in "@type"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// kinds the benchmark serves, by their names in the snapshot file
var kinds = map[string]resource.Type{
	"clusters":  resource.ClusterType,
	"listeners": resource.ListenerType,
}

func kindOf(typeURL string) string {
	for k, t := range kinds {
		if t == typeURL {
			return k
		}
	}
	return ""
}

var outMu sync.Mutex

func emit(format string, a ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", a...)
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}

// acks turns the requests Envoy sends back into ACK/NACK events. SotW
// requests carry the accepted version; delta requests carry the nonce of the
// response they answer, so delta responses are remembered by nonce.
type acks struct {
	mu     sync.Mutex
	setAt  time.Time
	nonces map[int64]map[string]string // stream → nonce → version
}

func (a *acks) since() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.setAt.IsZero() {
		return 0
	}
	return time.Since(a.setAt)
}

func (a *acks) sotwRequest(_ int64, req *discovery.DiscoveryRequest) error {
	kind := kindOf(req.GetTypeUrl())
	if kind == "" || req.GetResponseNonce() == "" {
		return nil
	}
	if d := req.GetErrorDetail(); d != nil {
		emit("nack %s %s %s", kind, req.GetVersionInfo(), oneLine(d.GetMessage()))
		return nil
	}
	emit("ack %s %s %s", kind, req.GetVersionInfo(), ms(a.since()))
	return nil
}

func (a *acks) deltaResponse(stream int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nonces[stream] == nil {
		a.nonces[stream] = map[string]string{}
	}
	a.nonces[stream][resp.GetNonce()] = resp.GetSystemVersionInfo()
}

func (a *acks) deltaRequest(stream int64, req *discovery.DeltaDiscoveryRequest) error {
	kind := kindOf(req.GetTypeUrl())
	if kind == "" || req.GetResponseNonce() == "" {
		return nil
	}
	a.mu.Lock()
	version, ok := a.nonces[stream][req.GetResponseNonce()]
	delete(a.nonces[stream], req.GetResponseNonce())
	a.mu.Unlock()
	if !ok {
		return nil
	}
	if d := req.GetErrorDetail(); d != nil {
		emit("nack %s %s %s", kind, version, oneLine(d.GetMessage()))
		return nil
	}
	emit("ack %s %s %s", kind, version, ms(a.since()))
	return nil
}

func (a *acks) deltaClosed(stream int64, _ *core.Node) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.nonces, stream)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

type snapshotFile struct {
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

// load parses a snapshot file into typed resources per kind.
func load(path string) (map[string][]types.Resource, map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var f snapshotFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string][]types.Resource{}
	for kind, items := range f.Resources {
		typeURL, ok := kinds[kind]
		if !ok {
			return nil, nil, fmt.Errorf("%s: resources.%s: unknown kind", path, kind)
		}
		if _, ok := f.Versions[kind]; !ok {
			return nil, nil, fmt.Errorf("%s: versions.%s: missing", path, kind)
		}
		list := make([]types.Resource, 0, len(items))
		for i, item := range items {
			var wrapped anypb.Any
			if err := protojson.Unmarshal(item, &wrapped); err != nil {
				return nil, nil, fmt.Errorf("%s: resources.%s[%d]: %w", path, kind, i, err)
			}
			if wrapped.GetTypeUrl() != typeURL {
				return nil, nil, fmt.Errorf("%s: resources.%s[%d]: @type %s, expected %s", path, kind, i, wrapped.GetTypeUrl(), typeURL)
			}
			msg, err := wrapped.UnmarshalNew()
			if err != nil {
				return nil, nil, fmt.Errorf("%s: resources.%s[%d]: %w", path, kind, i, err)
			}
			list = append(list, msg)
		}
		out[kind] = list
	}
	return out, f.Versions, nil
}

func main() {
	listen := flag.String("listen", "", "unix:<path> or <host>:<port>")
	flag.Parse()
	if *listen == "" {
		fmt.Fprintln(os.Stderr, "-listen is required")
		os.Exit(2)
	}
	network, address := "tcp", *listen
	if p, ok := strings.CutPrefix(*listen, "unix:"); ok {
		network, address = "unix", p
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	ctx := context.Background()
	a := &acks{nonces: map[int64]map[string]string{}}
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	xds := server.NewServer(ctx, snapshots, server.CallbackFuncs{
		StreamRequestFunc:       a.sotwRequest,
		StreamDeltaRequestFunc:  a.deltaRequest,
		StreamDeltaResponseFunc: a.deltaResponse,
		DeltaStreamClosedFunc:   a.deltaClosed,
	})
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, xds)
	go func() {
		if err := g.Serve(lis); err != nil {
			emit("error %s", oneLine(err.Error()))
		}
	}()
	if network == "unix" {
		emit("ready unix:%s", address)
	} else {
		emit("ready %s", lis.Addr().String())
	}

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "set":
			t := time.Now()
			res, versions, err := load(f[2])
			if err != nil {
				emit("error %s", oneLine(err.Error()))
				continue
			}
			emit("loaded %s", ms(time.Since(t)))
			snap := &cache.Snapshot{}
			for kind, list := range res {
				snap.Resources[cache.GetResponseType(kinds[kind])] = cache.NewResources(versions[kind], list)
			}
			a.mu.Lock()
			a.setAt = time.Now()
			t0 := a.setAt
			a.mu.Unlock()
			if err := snap.Consistent(); err != nil {
				emit("error %s", oneLine(err.Error()))
				continue
			}
			if err := snapshots.SetSnapshot(ctx, f[1], snap); err != nil {
				emit("error %s", oneLine(err.Error()))
				continue
			}
			emit("set %s", ms(time.Since(t0)))
		case len(f) == 1 && f[0] == "mem":
			debug.FreeOSMemory()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			emit("mem %d %d", rss(), m.HeapAlloc)
		default:
			emit("error unknown command %q", in.Text())
		}
	}
	// stdin closed: the benchmark is done with us
	g.Stop()
}

// rss is this process's resident set size in bytes (VmRSS), 0 if unknown.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
