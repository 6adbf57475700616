package postgres

import (
	"bufio"
	"context"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-fw/rampart/internal/pgtest"
)

// TestDeploySettingsKnown: every setting of deploy/postgresql/rampart.conf
// is one the real server knows, booleans and enums take one of their
// values, and the settings a session may change are accepted by SET (the
// server's own parser: units, ranges). A misspelt setting would otherwise
// only show in the server's log when an operator restarts it.
func TestDeploySettingsKnown(t *testing.T) {
	f, err := os.Open("../../../deploy/postgresql/rampart.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type setting struct{ name, value string }
	var settings []setting
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			if strings.TrimSpace(line) != "" {
				t.Errorf("line %q is not name = value", sc.Text())
			}
			continue
		}
		settings = append(settings, setting{strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), "'")})
	}
	if len(settings) < 5 {
		t.Fatalf("read %d settings; the file is not what this test expects", len(settings))
	}
	db := open(t, pgtest.DSN(t))
	ctx := context.Background()
	for _, s := range settings {
		var vartype, context string
		var enumvals []string
		err := db.pool.QueryRow(ctx, `SELECT vartype, context, coalesce(enumvals, '{}') FROM pg_settings WHERE name = $1`, s.name).Scan(&vartype, &context, &enumvals)
		if err != nil {
			t.Errorf("%s: not a setting the server knows (%v)", s.name, err)
			continue
		}
		switch {
		case vartype == "bool" && !slices.Contains([]string{"on", "off", "true", "false"}, s.value):
			t.Errorf("%s = %s: want on or off", s.name, s.value)
		case vartype == "enum" && !slices.Contains(enumvals, s.value):
			t.Errorf("%s = %s: want one of %v", s.name, s.value, enumvals)
		case context == "user" || context == "superuser":
			tx, err := db.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// set_config is SET LOCAL with the value as a parameter.
			if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, s.name, s.value); err != nil {
				t.Errorf("%s = %s: the server refuses it: %v", s.name, s.value, err)
			}
			tx.Rollback(ctx)
		}
	}
}

// TestDeploySetupSQL: deploy/postgresql/setup.sql, run by psql as the
// README says, creates a role that can open (and so migrate) its database
// without being a superuser.
func TestDeploySetupSQL(t *testing.T) {
	dsn := pgtest.DSN(t)
	psql, err := pgtest.Tool("psql")
	if err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	admin := pool(t, dsn)
	t.Cleanup(func() {
		admin.Exec(ctx, `DROP DATABASE IF EXISTS rampart WITH (FORCE)`)
		admin.Exec(ctx, `DROP ROLE IF EXISTS rampart`)
	})
	out, err := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", "-v", "password='s3cret'",
		"-f", "../../../deploy/postgresql/setup.sql", dsn).CombinedOutput()
	if err != nil {
		t.Fatalf("psql -f setup.sql: %v\n%s", err, out)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.UserPassword("rampart", "s3cret"), "/rampart"
	db := open(t, u.String())
	var user string
	var super bool
	if err := db.pool.QueryRow(ctx, `SELECT current_user, usesuper FROM pg_user WHERE usename = current_user`).Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != "rampart" || super {
		t.Errorf("connected as %q (superuser %v); want rampart, not a superuser", user, super)
	}
	var owner string
	if err := db.pool.QueryRow(ctx, `SELECT tableowner FROM pg_tables WHERE tablename = 'security_groups'`).Scan(&owner); err != nil || owner != "rampart" {
		t.Errorf("security_groups owned by %q (%v); want rampart, who migrated it", owner, err)
	}
}
