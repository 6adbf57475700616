package rossim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Containers. /container/add file=<tarball on /file> creates a container
// that is extracting, then stopped [C: manual containers, "adding a
// container only extracts it"; status flags E extracting, S stopped, R
// running]; /container/start runs it, and the simulator hands it to
// Options.ContainerRunner. rossim imports nothing that runs an agent: the
// runner is wired in by the caller (internal/simagent runs the real agent
// in-process).
//
// Address mapping. Inside a real container the router's API is at the
// veth's gateway (172.17.0.1:8728 by default). The simulator opens, per
// running container, a loopback listener that serves the same router and
// sees every session as coming from the veth's address (172.17.0.2), so
// /user address= and /ip/service address/available-from apply as on the
// router. Container.RouterAddr maps gateway:8728 (or any address of the
// router on the veth's subnet) to that listener. The runner maps the rest
// (the broker URL) itself. api-ssl (8729) is not served.

// Mount is one container mount: Src is the host directory that stands for
// the router path RouterSrc; Dst is the path inside the container.
type Mount struct{ Src, RouterSrc, Dst string }

// Container is what a started container runs with.
type Container struct {
	ID, Name  string
	File      string            // the tarball, a /file name
	Env       map[string]string // envs lists named by envlists (and inline env=)
	Mounts    []Mount
	RootDir   string // host directory that stands for root-dir
	Interface string // the veth
	Address   netip.Prefix
	Gateway   netip.Addr
	// APIAddr is the loopback listener where this container reaches the
	// router's API (sessions appear from Address).
	APIAddr string
	// Log receives the container's output: logging=yes copies it to the
	// router's log (Router.Log).
	Log io.Writer
}

// RouterAddr maps an address the container would dial to reach the router
// API (the gateway, or another router address in the veth's subnet, port
// 8728) to APIAddr.
func (c Container) RouterAddr(hostport string) (string, bool) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || ap.Port() != 8728 {
		return "", false
	}
	if ap.Addr() == c.Gateway || c.Address.Masked().Contains(ap.Addr()) && ap.Addr() != c.Address.Addr() {
		return c.APIAddr, true
	}
	return "", false
}

// HostPath maps a path inside the container to the host: through the
// mount whose Dst holds it, else under RootDir.
func (c Container) HostPath(p string) string {
	p = path.Clean("/" + p)
	best := -1
	for i, m := range c.Mounts {
		d := path.Clean("/" + m.Dst)
		if (p == d || strings.HasPrefix(p, d+"/") || d == "/") && (best < 0 || len(d) > len(c.Mounts[best].Dst)) {
			best = i
		}
	}
	if best >= 0 {
		rel := strings.TrimPrefix(p, path.Clean("/"+c.Mounts[best].Dst))
		return filepath.Join(c.Mounts[best].Src, filepath.FromSlash(rel))
	}
	return filepath.Join(c.RootDir, filepath.FromSlash(p))
}

// ContainerRunner runs a started container until stop is called. It must
// return promptly; the container runs in the background.
type ContainerRunner func(ctx context.Context, c Container) (stop func(), err error)

type runningContainer struct {
	ln   net.Listener
	stop func()
}

// fileStore is the router's files: a host directory.
type fileStore struct {
	dir string // Options.FilesDir, or a temporary directory once needed

	mu   sync.Mutex
	tmp  bool
	ids  map[string]uint64
	next uint64
}

func (f *fileStore) root() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dir == "" {
		d, err := os.MkdirTemp("", "rossim-files-")
		if err != nil {
			return "", fmt.Errorf("create the router's files directory: %w", err)
		}
		f.dir, f.tmp = d, true
	}
	return f.dir, nil
}

func (f *fileStore) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tmp {
		os.RemoveAll(f.dir)
		f.tmp = false
	}
}

// hostPath is the host path of a router file name ("usb1/x.tar"); names
// cannot leave the files directory.
func (f *fileStore) hostPath(name string) (string, error) {
	root, err := f.root()
	if err != nil {
		return "", err
	}
	clean := path.Clean("/" + name)
	return filepath.Join(root, filepath.FromSlash(clean)), nil
}

// rows lists the files as /file prints them [C: manual "Files"; type
// names I]. Ids are stable per name.
func (f *fileStore) rows() []*row {
	root, err := f.root()
	if err != nil {
		return nil
	}
	var out []*row
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		typ, size := "directory", "0"
		if !d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return nil
			}
			size = strconv.FormatInt(info.Size(), 10)
			switch {
			case strings.HasSuffix(rel, ".rsc"):
				typ = "script"
			case strings.HasSuffix(rel, ".tar"):
				typ = "tar file"
			default:
				typ = "file"
			}
		}
		out = append(out, &row{id: f.id(rel), props: map[string]string{"name": rel, "type": typ, "size": size}})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].props["name"] < out[j].props["name"] })
	return out
}

func (f *fileStore) id(name string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids == nil {
		f.ids = map[string]uint64{}
	}
	if id, ok := f.ids[name]; ok {
		return id
	}
	f.next++
	f.ids[name] = f.next
	return f.next
}

func (r *Router) fileExists(name string) bool {
	p, err := r.files.hostPath(name)
	if err != nil {
		return false
	}
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// PutFile stores a file among the router's files (an upload).
func (r *Router) PutFile(name string, data []byte) error {
	p, err := r.files.hostPath(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("put file %s: %w", name, err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("put file %s: %w", name, err)
	}
	return nil
}

// ReadFile returns one of the router's files.
func (r *Router) ReadFile(name string) ([]byte, error) {
	p, err := r.files.hostPath(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read file %s: %w", name, err)
	}
	return b, nil
}

// Log returns the router's log lines (container output with logging=yes,
// and the simulator's container events), oldest first.
func (r *Router) Log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.routerLog...)
}

const maxLogLines = 1000

func (r *Router) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.appendLog(line)
	r.mu.Unlock()
}

func (r *Router) appendLog(line string) {
	r.log.Info("router log", "line", line)
	r.routerLog = append(r.routerLog, time.Now().UTC().Format("15:04:05")+" "+line)
	r.logSeq++
	if n := len(r.routerLog); n > maxLogLines {
		r.routerLog = append(r.routerLog[:0], r.routerLog[n-maxLogLines:]...)
	}
}

// logRows lists the router log as /log prints it (r.mu held): time,
// topics and message [C: manual "Log"; topics here are container,info for
// a container's output and system,info otherwise, I].
func (r *Router) logRows() []*row {
	out := make([]*row, 0, len(r.routerLog))
	first := r.logSeq - uint64(len(r.routerLog)) + 1
	for i, line := range r.routerLog {
		tm, msg, _ := strings.Cut(line, " ")
		topics := "system,info"
		if strings.HasPrefix(msg, "container,") {
			topics = "container,info"
			_, msg, _ = strings.Cut(msg, ": ")
		}
		out = append(out, &row{id: first + uint64(i), props: map[string]string{"time": tm, "topics": topics, "message": msg}})
	}
	return out
}

// logWriter copies a container's output, line by line, to the router log.
type logWriter struct {
	r      *Router
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.r.logf("%s%s", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// setContainerStatus records a status change of container id as a write
// (r.mu not held) if its status is one of from.
func (r *Router) setContainerStatus(id uint64, to string, from ...string) bool {
	r.mu.Lock()
	d := r.db
	old, ok := d.t[tContainer].byID[id]
	if !ok || r.closed {
		r.mu.Unlock()
		return false
	}
	match := len(from) == 0
	for _, f := range from {
		match = match || old.props["status"] == f
	}
	if !match {
		r.mu.Unlock()
		return false
	}
	d.rec = d.rec[:0]
	nr := old.clone()
	nr.props["status"] = to
	d.replace(tContainer, d.pos(tContainer, id), nr)
	evs := r.commit()
	r.appendLog("container " + idString(id) + " " + to)
	r.mu.Unlock()
	r.deliver(evs)
	return true
}

// extractLater moves a new container from extracting to stopped.
func (r *Router) extractLater(id uint64) {
	d := r.opts.ExtractTime
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	r.wg.Add(1)
	time.AfterFunc(d, func() {
		defer r.wg.Done()
		r.mu.Lock()
		row := r.db.t[tContainer].byID[id]
		file := ""
		if row != nil {
			file = row.props["file"]
		}
		r.mu.Unlock()
		if file != "" {
			arch, err := r.loadImage(file)
			if err != nil {
				r.logf("container %s: could not load image %s: %v", idString(id), file, err)
				r.setContainerStatus(id, "error", "extracting")
				return
			}
			r.mu.Lock()
			r.ctrArch[id] = arch
			r.mu.Unlock()
		}
		r.setContainerStatus(id, "stopped", "extracting")
	})
}

func (r *Router) loadImage(file string) (string, error) {
	p, err := r.files.hostPath(file)
	if err != nil {
		return "", err
	}
	return imageArch(p)
}

// containerVerb runs /container/start or /container/stop (writeMu and
// r.mu held). The runner is called after the locks are released, by the
// returned func.
func (r *Router) containerVerb(c *command, verb string) (func(), *Trap) {
	for _, a := range c.attrs {
		if a.k != ".id" && a.k != "numbers" {
			return nil, errUnknownParam(a.k)
		}
	}
	ids, trap := r.targets(c, tContainer)
	if trap != nil {
		return nil, trap
	}
	d := r.db
	var after []func()
	for _, id := range ids {
		row := d.t[tContainer].byID[id]
		switch verb {
		case "start":
			if row.props["status"] != "stopped" {
				// [I] text; RouterOS refuses to start a container
				// that is still extracting.
				return nil, &Trap{Message: "failure: container is " + row.props["status"] + ", not stopped"}
			}
			if r.singles["/system/device-mode"]["container"] != "true" {
				return nil, &Trap{Message: "failure: container mode is not enabled, see /system/device-mode"} // [I]
			}
			if dns := r.singles["/ip/dns"]; dns["servers"] == "" && dns["dynamic-servers"] == "" && row.props["dns"] == "" {
				// "The container does not start if neither /ip/dns nor
				// the container's dns= is set" [C: manual containers];
				// the text is [I].
				return nil, &Trap{Message: "failure: no DNS servers configured, set /ip/dns servers or the container's dns"}
			}
			spec, err := r.containerSpec(row)
			if err != nil {
				return nil, &Trap{Message: "failure: " + err.Error()}
			}
			if arch := r.ctrArch[id]; arch != "" && !runsOn(arch, r.opts.Architecture) {
				// It starts and dies at once: the binary cannot exec.
				after = append(after, func() {
					r.logf("container %s: exec format error: the image is linux/%s, this router is %s", idString(id), arch, r.opts.Architecture)
					r.setContainerStatus(id, "stopped", "running")
				})
				continue
			}
			after = append(after, func() { r.runContainer(id, spec) })
		case "stop":
			if row.props["status"] != "running" {
				continue
			}
			rc := r.ctrs[id]
			delete(r.ctrs, id)
			after = append(after, func() {
				if rc != nil {
					rc.ln.Close()
					if rc.stop != nil {
						rc.stop()
					}
				}
				r.setContainerStatus(id, "stopped", "running", "stopping")
			})
		}
	}
	for _, id := range ids {
		nr := d.t[tContainer].byID[id].clone()
		if verb == "start" {
			nr.props["status"] = "running"
		} else if nr.props["status"] == "running" {
			nr.props["status"] = "stopping"
		}
		d.replace(tContainer, d.pos(tContainer, id), nr)
	}
	return func() {
		for _, f := range after {
			f()
		}
	}, nil
}

// containerSpec gathers what a container starts with (r.mu held).
func (r *Router) containerSpec(row *row) (Container, error) {
	d := r.db
	p := row.props
	c := Container{ID: idString(row.id), Name: p["name"], File: p["file"], Env: map[string]string{}}
	envKey, mountKey := r.listKey(tEnvs), r.listKey(tMounts)
	lists := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, x := range strings.Split(s, ",") {
			if x != "" {
				m[x] = true
			}
		}
		return m
	}
	envLists := lists(p["envlists"] + "," + p["envlist"])
	for _, e := range d.t[tEnvs].rows {
		if envLists[e.props[envKey]] {
			c.Env[e.props["key"]] = e.props["value"]
		}
	}
	// Inline env="K=V,K2=V2" and mount="src=…,dst=…" (7.21+) [3P: tikoci].
	for _, kvp := range strings.Split(p["env"], ",") {
		if k, v, ok := strings.Cut(kvp, "="); ok {
			c.Env[k] = v
		}
	}
	addMount := func(src, dst string) error {
		host, err := r.files.hostPath(src)
		if err != nil {
			return err
		}
		// RouterOS creates a mount's missing source directory [C: manual
		// containers].
		if err := os.MkdirAll(host, 0o755); err != nil {
			return fmt.Errorf("create mount source %s: %w", src, err)
		}
		c.Mounts = append(c.Mounts, Mount{Src: host, RouterSrc: src, Dst: dst})
		return nil
	}
	mountLists := lists(p["mountlists"] + "," + p["mounts"])
	for _, m := range d.t[tMounts].rows {
		if mountLists[m.props[mountKey]] {
			if err := addMount(m.props["src"], m.props["dst"]); err != nil {
				return c, err
			}
		}
	}
	if v := p["mount"]; v != "" {
		var src, dst string
		for _, kvp := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(kvp, "=")
			switch k {
			case "src":
				src = val
			case "dst":
				dst = val
			}
		}
		if err := addMount(src, dst); err != nil {
			return c, err
		}
	}
	root := p["root-dir"]
	if root == "" {
		root = "container-" + strings.TrimPrefix(idString(row.id), "*")
	}
	host, err := r.files.hostPath(root)
	if err != nil {
		return c, err
	}
	if err := os.MkdirAll(host, 0o755); err != nil {
		return c, fmt.Errorf("create root-dir %s: %w", root, err)
	}
	c.RootDir = host
	for _, v := range d.t[tVeth].rows {
		if v.props["name"] == p["interface"] {
			c.Interface = v.props["name"]
			c.Address, _ = netip.ParsePrefix(v.props["address"])
			c.Gateway, _ = netip.ParseAddr(v.props["gateway"])
		}
	}
	if !c.Address.IsValid() {
		return c, errors.New("container interface has no address")
	}
	if p["logging"] == "true" {
		c.Log = &logWriter{r: r, prefix: "container," + or(p["name"], c.ID) + ": "}
	} else {
		c.Log = io.Discard
	}
	return c, nil
}

// runContainer opens the container's view of the router API and calls
// the runner (no lock held).
func (r *Router) runContainer(id uint64, c Container) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.logf("container %s: cannot open its API listener: %v", c.ID, err)
		r.setContainerStatus(id, "stopped", "running")
		return
	}
	c.APIAddr = ln.Addr().String()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		ln.Close()
		return
	}
	rc := &runningContainer{ln: ln}
	r.ctrs[id] = rc
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		_ = r.serveFrom(ln, &origin{iface: c.Interface, from: c.Address.Addr(), to: c.Gateway})
	}()
	r.logf("container %s started (API for it at %s, seen from %s)", c.ID, c.APIAddr, c.Address.Addr())
	if r.opts.ContainerRunner == nil {
		return
	}
	stop, err := r.opts.ContainerRunner(context.Background(), c)
	if err != nil {
		r.logf("container %s failed to start: %v", c.ID, err)
		r.mu.Lock()
		delete(r.ctrs, id)
		r.mu.Unlock()
		ln.Close()
		r.setContainerStatus(id, "stopped", "running")
		return
	}
	r.mu.Lock()
	if cur := r.ctrs[id]; cur == rc && !r.closed {
		rc.stop = stop
		stop = nil
	}
	r.mu.Unlock()
	if stop != nil { // stopped or closed meanwhile
		stop()
	}
}

// stopContainers stops every running container (Close).
func (r *Router) stopContainers() {
	r.mu.Lock()
	cs := r.ctrs
	r.ctrs = map[uint64]*runningContainer{}
	r.mu.Unlock()
	for _, rc := range cs {
		rc.ln.Close()
		if rc.stop != nil {
			rc.stop()
		}
	}
}
