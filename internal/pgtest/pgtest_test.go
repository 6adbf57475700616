package pgtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestServerAnswers: a real server, reached with pgx over TCP, runs as a
// user other than root and answers a query with a computed result.
func TestServerAnswers(t *testing.T) {
	conn := connect(t, DSN(t))
	ctx := context.Background()
	var sum int
	var version, user string
	var superuser bool
	err := conn.QueryRow(ctx, `SELECT 40 + 2, current_setting('server_version'),
		current_user, (SELECT usesuper FROM pg_user WHERE usename = current_user)`).Scan(&sum, &version, &user, &superuser)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if sum != 42 || user != "postgres" || !superuser {
		t.Errorf("got sum %d user %q superuser %v; want 42, postgres, true", sum, user, superuser)
	}
	t.Logf("PostgreSQL %s", version)
	// The server process itself must not be root (PostgreSQL refuses it):
	// read its real and effective uid from the kernel.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the server's status: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
			if f[1] == "0" || f[2] == "0" {
				t.Errorf("server runs as root: %s", line)
			}
			if os.Geteuid() != 0 && f[2] != strconv.Itoa(os.Geteuid()) {
				t.Errorf("server runs as %s; want our own uid %d", f[2], os.Geteuid())
			}
		}
	}
}

// TestFreshDatabasePerTest: each DSN is its own empty database, so what one
// test writes, another does not see.
func TestFreshDatabasePerTest(t *testing.T) {
	ctx := context.Background()
	a, b := connect(t, DSN(t)), connect(t, DSN(t))
	if _, err := a.Exec(ctx, `CREATE TABLE marker (v int); INSERT INTO marker VALUES (7)`); err != nil {
		t.Fatalf("create table in first database: %v", err)
	}
	var v int
	if err := a.QueryRow(ctx, `SELECT v FROM marker`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("read back: %d, %v; want 7", v, err)
	}
	var n int
	if err := b.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'marker'`).Scan(&n); err != nil {
		t.Fatalf("query second database: %v", err)
	}
	if n != 0 {
		t.Errorf("second database sees the first's table")
	}
	var da, db string
	a.QueryRow(ctx, `SELECT current_database()`).Scan(&da)
	b.QueryRow(ctx, `SELECT current_database()`).Scan(&db)
	if da == db || da == "" {
		t.Errorf("databases %q and %q; want two different ones", da, db)
	}
}
