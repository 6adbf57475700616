// Package pgtest runs a real PostgreSQL server for tests: Debian's binaries
// (package postgresql, /usr/lib/postgresql/<major>/bin), started once per
// test binary in a temporary directory on a free loopback port, with a
// fresh database for every test that asks for one.
//
// PostgreSQL refuses to run as root, and tests (CI included) run as root:
// the server then runs as the system user "postgres" that the Debian
// package creates (as any other user, it runs as that user).
//
// A package that uses it calls Main from its TestMain, so the server,
// started on first use only, is stopped when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Where the binaries are missing, DSN skips the test and says how to install
// them.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampart-fw/rampart/internal/freeport"
)

// startTimeout bounds initdb plus the server's start on a loaded 2-core CI
// machine (both take about 2 s there when idle).
const startTimeout = 60 * time.Second

var (
	mainCalled atomic.Bool
	once       sync.Once
	srv        *server
	srvErr     error
	skipWhy    string
	dbSeq      atomic.Int64
)

// Main runs the tests and then stops the server if a test started it. Call
// it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// DSN creates a fresh, empty database for this test on the package's
// server (starting the server on first use) and returns its connection
// string. The database is dropped when the test ends.
func DSN(t testing.TB) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: call pgtest.Main from the package's TestMain, so the server is stopped after the tests")
	}
	once.Do(func() { srv, skipWhy, srvErr = start() })
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if srvErr != nil {
		t.Fatalf("pgtest: %v", srvErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE: a test that leaked a connection must not fail the next.
		if err := srv.exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return srv.dsn(name)
}

type server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *os.File
}

func (s *server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

func (s *server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Tool returns the path of one of the server's command-line tools (psql,
// pg_dump…), from the same installation the server runs from.
func Tool(name string) (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("PostgreSQL tool %s: %w", name, err)
	}
	return p, nil
}

// binDir finds the newest installed major version's bin directory.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		return major(dirs[i]) > major(dirs[j])
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	return "", errors.New("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install them with: apt-get install postgresql)")
}

func major(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// credential is who the server runs as: nil (ourselves) unless we are
// root, then the "postgres" system user.
func credential() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root and PostgreSQL refuses root, but there is no \"postgres\" user to run it as (the Debian package creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// start returns the running server, or why the tests skip, or an error.
func start() (*server, string, error) {
	bin, err := binDir()
	if err != nil {
		return nil, "pgtest: " + err.Error(), nil
	}
	cred, uid, gid, err := credential()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "rampart-pgtest-")
	if err != nil {
		return nil, "", fmt.Errorf("create temporary directory: %w", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("hand %s to the server's user: %w", dir, err)
	}
	fail := func(err error) (*server, string, error) {
		os.RemoveAll(dir)
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		return fail(err)
	}
	port := ports[0]
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return fail(fmt.Errorf("create server log: %w", err))
	}
	// Durability is not under test here (a test's database dies with the
	// process): fsync off makes CREATE DATABASE and commits cheap.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	// Pdeathsig: a test binary killed by its timeout takes the server along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	s := &server{dir: dir, port: port, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { cmd.Wait(); close(s.done) }()
	for {
		err := s.exec(ctx, "SELECT 1")
		if err == nil {
			return s, "", nil
		}
		select {
		case <-s.done:
			s.stop()
			return nil, "", fmt.Errorf("postgres exited at start: %s", tail(filepath.Join(dir, "postgres.log")))
		case <-ctx.Done():
			msg := tail(filepath.Join(dir, "postgres.log"))
			s.stop()
			return nil, "", fmt.Errorf("postgres not ready within %s: %w\n%s", startTimeout, err, msg)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down at once (immediate mode: nothing here needs a
// checkpoint) and removes its directory.
func (s *server) stop() error {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	s.log.Close()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove %s: %w", s.dir, err)
	}
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := string(b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}
