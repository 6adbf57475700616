package postgres

import (
	"bufio"
	"context"
	"os"
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
