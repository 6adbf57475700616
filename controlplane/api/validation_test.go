package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// validGroup is a body every case below changes in one place.
func validGroup() map[string]any {
	return map[string]any{
		"name":        "Web servers",
		"description": "d",
		"rules": []any{
			map[string]any{"direction": "inbound", "order": 10, "protocol": 6, "port": "443", "address": "0.0.0.0/0", "description": "https"},
			map[string]any{"direction": "outbound", "order": 20, "protocol": 17, "port": "53", "address": "10.0.0.0/8", "description": "dns"},
			map[string]any{"direction": "inbound", "order": 30, "protocol": 1, "port": "", "address": "192.0.2.0/24", "description": "ping"},
		},
		"sites": []any{"site_hq"},
	}
}

func setRule(i int, k string, v any) func(map[string]any) {
	return func(b map[string]any) { b["rules"].([]any)[i].(map[string]any)[k] = v }
}

func delRule(i int, k string) func(map[string]any) {
	return func(b map[string]any) { delete(b["rules"].([]any)[i].(map[string]any), k) }
}

type verdict struct {
	Status int
	Code   string
	// Field is the path the message must start with ("" for none).
	Field string
}

func TestSecurityGroupValidation(t *testing.T) {
	e := newEnv(t)
	manyRules := func(n int) []any {
		rs := make([]any, n)
		for i := range rs {
			rs[i] = map[string]any{"direction": "inbound", "order": i%250 + 1, "protocol": 6, "port": "443", "address": "0.0.0.0/0", "description": ""}
		}
		return rs
	}
	cases := []struct {
		name   string
		raw    string // used instead of the body when set
		change func(map[string]any)
		want   verdict
		// hint must appear in the message: what would be valid.
		hint string
	}{
		{name: "not json", raw: `{"name": "x",`, want: verdict{400, cp.CodeInvalidJSON, ""}, hint: "JSON"},
		{name: "trailing data", raw: `{} {}`, want: verdict{400, cp.CodeInvalidJSON, ""}},
		{name: "array body", raw: `[]`, want: verdict{400, cp.CodeInvalidType, ""}, hint: "object"},
		{name: "name wrong type", change: func(b map[string]any) { b["name"] = 5 }, want: verdict{400, cp.CodeInvalidType, "name"}, hint: "string"},
		{name: "order as string", change: setRule(1, "order", "20"), want: verdict{400, cp.CodeInvalidType, "rules[1].order"}, hint: "integer"},
		{name: "order fractional", change: setRule(1, "order", 2.5), want: verdict{400, cp.CodeInvalidType, "rules[1].order"}, hint: "integer"},
		{name: "rules not array", change: func(b map[string]any) { b["rules"] = "all" }, want: verdict{400, cp.CodeInvalidType, "rules"}, hint: "array"},
		{name: "name null", change: func(b map[string]any) { b["name"] = nil }, want: verdict{400, cp.CodeInvalidType, "name"}},
		{name: "name missing", change: func(b map[string]any) { delete(b, "name") }, want: verdict{422, cp.CodeParameterMissing, "name"}, hint: "required"},
		{name: "rules missing", change: func(b map[string]any) { delete(b, "rules") }, want: verdict{422, cp.CodeParameterMissing, "rules"}},
		{name: "sites missing", change: func(b map[string]any) { delete(b, "sites") }, want: verdict{422, cp.CodeParameterMissing, "sites"}},
		{name: "rule description missing", change: delRule(2, "description"), want: verdict{422, cp.CodeParameterMissing, "rules[2].description"}},
		{name: "rule port missing", change: delRule(0, "port"), want: verdict{422, cp.CodeParameterMissing, "rules[0].port"}},
		{name: "unknown top-level field", change: func(b map[string]any) { b["colour"] = "red" }, want: verdict{422, cp.CodeUnknownField, "colour"}, hint: "Allowed fields"},
		{name: "unknown rule field", change: setRule(1, "action", "drop"), want: verdict{422, cp.CodeUnknownField, "rules[1].action"}, hint: "direction"},
		{name: "read-only id sent", change: func(b map[string]any) { b["id"] = "sec_grp_x" }, want: verdict{422, cp.CodeUnknownField, "id"}},
		{name: "name too short", change: func(b map[string]any) { b["name"] = "ab" }, want: verdict{422, cp.CodeInvalidValue, "name"}, hint: "3 to 255"},
		{name: "name too long", change: func(b map[string]any) { b["name"] = strings.Repeat("n", 256) }, want: verdict{422, cp.CodeInvalidValue, "name"}},
		{name: "description too long", change: func(b map[string]any) { b["description"] = strings.Repeat("d", 1025) }, want: verdict{422, cp.CodeInvalidValue, "description"}, hint: "1024"},
		{name: "rule description too long", change: setRule(0, "description", strings.Repeat("d", 256)), want: verdict{422, cp.CodeInvalidValue, "rules[0].description"}, hint: "255"},
		{name: "direction", change: setRule(0, "direction", "ingress"), want: verdict{422, cp.CodeInvalidValue, "rules[0].direction"}, hint: `"inbound", "outbound"`},
		{name: "order zero", change: setRule(0, "order", 0), want: verdict{422, cp.CodeInvalidValue, "rules[0].order"}, hint: "1-250"},
		{name: "order 251", change: setRule(0, "order", 251), want: verdict{422, cp.CodeInvalidValue, "rules[0].order"}, hint: "1-250"},
		{name: "protocol 256", change: setRule(0, "protocol", 256), want: verdict{422, cp.CodeInvalidValue, "rules[0].protocol"}, hint: "0-255"},
		{name: "protocol negative", change: setRule(0, "protocol", -1), want: verdict{422, cp.CodeInvalidValue, "rules[0].protocol"}},
		{name: "port with icmp", change: setRule(2, "port", "80"), want: verdict{422, cp.CodeInvalidPort, "rules[2].port"}, hint: "6 (tcp), 17 (udp)"},
		{name: "port with all protocols", change: func(b map[string]any) { setRule(0, "protocol", 0)(b) }, want: verdict{422, cp.CodeInvalidPort, "rules[0].port"}, hint: `must be ""`},
		{name: "port not a number", change: setRule(0, "port", "https"), want: verdict{422, cp.CodeInvalidPort, "rules[0].port"}, hint: "N-M"},
		{name: "port zero", change: setRule(0, "port", "0"), want: verdict{422, cp.CodeInvalidPort, "rules[0].port"}, hint: "1-65535"},
		{name: "port too high", change: setRule(0, "port", "65536"), want: verdict{422, cp.CodeInvalidPort, "rules[0].port"}, hint: "1-65535"},
		{name: "port range reversed", change: setRule(0, "port", "90-80"), want: verdict{422, cp.CodeInvalidPort, "rules[0].port"}, hint: "80-90"},
		{name: "port list with empty", change: setRule(0, "port", "80,,443"), want: verdict{422, cp.CodeInvalidPort, "rules[0].port"}},
		{name: "cidr host bits", change: setRule(1, "address", "10.0.0.1/24"), want: verdict{422, cp.CodeInvalidAddress, "rules[1].address"}, hint: `did you mean "10.0.0.0/24"`},
		{name: "cidr ipv6 host bits", change: setRule(1, "address", "2001:db8::1/32"), want: verdict{422, cp.CodeInvalidAddress, "rules[1].address"}, hint: `did you mean "2001:db8::/32"`},
		{name: "icmp with ipv6", change: setRule(2, "address", "2001:db8::/32"), want: verdict{422, cp.CodeInvalidValue, "rules[2].protocol"}, hint: "use 58 (icmpv6)"},
		{name: "icmpv6 with ipv4", change: setRule(2, "protocol", 58), want: verdict{422, cp.CodeInvalidValue, "rules[2].protocol"}, hint: "use 1 (icmp)"},
		{name: "not a cidr", change: setRule(1, "address", "10.0.0.0/33"), want: verdict{422, cp.CodeInvalidAddress, "rules[1].address"}, hint: "an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32"},
		{name: "bare address", change: setRule(1, "address", "10.0.0.1"), want: verdict{422, cp.CodeInvalidAddress, "rules[1].address"}, hint: "192.0.2.0/24"},
		{name: "malformed prefix list id", change: setRule(1, "address", "prfx_lst_nope"), want: verdict{422, cp.CodePrefixListNotFound, "rules[1].address"}},
		{name: "unknown prefix list", change: setRule(1, "address", "prfx_lst_0ujsswThIGTUYm2K8FjOOfxcYpw"), want: verdict{422, cp.CodePrefixListNotFound, "rules[1].address"}, hint: "POST /vpc/prefix-lists"},
		{name: "duplicate order", change: setRule(2, "order", 10), want: verdict{422, cp.CodeDuplicateOrder, "rules[2].order"}, hint: "rules[0]"},
		{name: "251 rules", change: func(b map[string]any) { b["rules"] = manyRules(251) }, want: verdict{422, cp.CodeTooManyRules, "rules"}, hint: "250"},
		{name: "site id format", change: func(b map[string]any) { b["sites"] = []any{"site_hq", "hq"} }, want: verdict{422, cp.CodeInvalidSite, "sites[1]"}, hint: "site_"},
		{name: "site id too long", change: func(b map[string]any) { b["sites"] = []any{"site_" + strings.Repeat("a", 65)} }, want: verdict{422, cp.CodeInvalidSite, "sites[0]"}},
		{name: "site id with slash", change: func(b map[string]any) { b["sites"] = []any{"site_a/b"} }, want: verdict{422, cp.CodeInvalidSite, "sites[0]"}},
		{name: "duplicate site", change: func(b map[string]any) { b["sites"] = []any{"site_hq", "site_hq"} }, want: verdict{422, cp.CodeDuplicateSite, "sites[1]"}, hint: "sites[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.raw != "" {
				body = []byte(c.raw)
			} else {
				b := validGroup()
				c.change(b)
				var err error
				if body, err = json.Marshal(b); err != nil {
					t.Fatal(err)
				}
			}
			before := e.do("GET", "/vpc/security-groups", orgA, nil).body
			r := e.do("POST", "/vpc/security-groups", orgA, body)
			er := r.errorResponse(t)
			got := verdict{Status: r.status, Code: er.Code}
			if c.want.Field != "" && strings.HasPrefix(er.Message, c.want.Field) {
				got.Field = c.want.Field
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("verdict (-want +got):\n%s\nmessage: %s", d, er.Message)
			}
			if !strings.Contains(er.Message, c.hint) {
				t.Errorf("message %q does not say %q", er.Message, c.hint)
			}
			if er.Type != "invalid_request_error" || er.DocURL == "" || !strings.HasSuffix(er.DocURL, er.Code) {
				t.Errorf("error envelope: %+v", er)
			}
			if after := e.do("GET", "/vpc/security-groups", orgA, nil).body; string(after) != string(before) {
				t.Errorf("a rejected write changed the store: %s -> %s", before, after)
			}
		})
	}
	// The valid body itself passes (the cases above differ in one place).
	if r := e.do("POST", "/vpc/security-groups", orgA, validGroup()); r.status != http.StatusCreated {
		t.Errorf("valid body: %d %s", r.status, r.body)
	}
	// 250 rules is the limit, not beyond it.
	b := validGroup()
	b["rules"] = manyRules(250)
	if r := e.do("POST", "/vpc/security-groups", orgA, b); r.status != http.StatusCreated {
		t.Errorf("250 rules: %d %s", r.status, r.body)
	}
}

func TestPrefixListValidation(t *testing.T) {
	e := newEnv(t)
	valid := func() map[string]any {
		return map[string]any{"name": "Office", "prefixes": []any{map[string]any{"cidr": "203.0.113.0/24", "description": "HQ"}}, "sites": []any{}}
	}
	many := make([]any, 501)
	for i := range many {
		many[i] = map[string]any{"cidr": fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}
	}
	cases := []struct {
		name   string
		change func(map[string]any)
		want   verdict
	}{
		{"name missing", func(b map[string]any) { delete(b, "name") }, verdict{422, cp.CodeParameterMissing, "name"}},
		{"name empty", func(b map[string]any) { b["name"] = "" }, verdict{422, cp.CodeInvalidValue, "name"}},
		{"prefixes missing", func(b map[string]any) { delete(b, "prefixes") }, verdict{422, cp.CodeParameterMissing, "prefixes"}},
		{"cidr missing", func(b map[string]any) { b["prefixes"] = []any{map[string]any{"description": "x"}} }, verdict{422, cp.CodeParameterMissing, "prefixes[0].cidr"}},
		{"cidr host bits", func(b map[string]any) { b["prefixes"] = []any{map[string]any{"cidr": "203.0.113.7/24"}} }, verdict{422, cp.CodeInvalidAddress, "prefixes[0].cidr"}},
		{"ipv6 host bits", func(b map[string]any) { b["prefixes"] = []any{map[string]any{"cidr": "2001:db8::1/32"}} }, verdict{422, cp.CodeInvalidAddress, "prefixes[0].cidr"}},
		{"duplicate ipv6 in two spellings", func(b map[string]any) {
			b["prefixes"] = []any{map[string]any{"cidr": "2001:db8::/32"}, map[string]any{"cidr": "2001:DB8::/32"}}
		}, verdict{422, cp.CodeDuplicatePrefix, "prefixes[1].cidr"}},
		{"duplicate cidr", func(b map[string]any) {
			b["prefixes"] = []any{map[string]any{"cidr": "192.0.2.0/24"}, map[string]any{"cidr": "192.0.2.0/24"}}
		}, verdict{422, cp.CodeDuplicatePrefix, "prefixes[1].cidr"}},
		{"501 prefixes", func(b map[string]any) { b["prefixes"] = many }, verdict{422, cp.CodeTooManyPrefixes, "prefixes"}},
		{"description too long", func(b map[string]any) { b["description"] = strings.Repeat("d", 1001) }, verdict{422, cp.CodeInvalidValue, "description"}},
		{"unknown field", func(b map[string]any) { b["cidrs"] = []any{} }, verdict{422, cp.CodeUnknownField, "cidrs"}},
		{"bad site", func(b map[string]any) { b["sites"] = []any{"site-1"} }, verdict{422, cp.CodeInvalidSite, "sites[0]"}},
		{"cidr not a string", func(b map[string]any) { b["prefixes"] = []any{map[string]any{"cidr": 10}} }, verdict{400, cp.CodeInvalidType, "prefixes[0].cidr"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := valid()
			c.change(b)
			r := e.do("POST", "/vpc/prefix-lists", orgA, b)
			er := r.errorResponse(t)
			got := verdict{Status: r.status, Code: er.Code}
			if strings.HasPrefix(er.Message, c.want.Field) {
				got.Field = c.want.Field
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("verdict (-want +got):\n%s\nmessage: %s", d, er.Message)
			}
		})
	}
	if r := e.do("GET", "/vpc/prefix-lists", orgA, nil); string(r.body) != "[]\n" {
		t.Errorf("rejected writes left %s", r.body)
	}
}

func TestRequestEnvelope(t *testing.T) {
	e := newEnv(t)
	// A body that is not declared JSON.
	req := func(ct string) response {
		return e.doRawCT("POST", "/vpc/security-groups", e.bearer(orgA), ct, `{"name":"abc","rules":[],"sites":[]}`)
	}
	if r := req("text/plain"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", r.status)
	}
	if r := req("application/json; charset=utf-8"); r.status != http.StatusCreated {
		t.Errorf("json with charset: %d %s", r.status, r.body)
	}
	big := `{"name":"` + strings.Repeat("a", 5<<20) + `","rules":[],"sites":[]}`
	if r := e.doRawCT("POST", "/vpc/security-groups", e.bearer(orgA), "application/json", big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("5 MiB body: %d", r.status)
	}
	// A PUT to an id that cannot exist is 404 before the body is read.
	if r := e.do("PUT", "/vpc/security-groups/nope", orgA, validGroup()); r.status != http.StatusNotFound {
		t.Errorf("PUT to a malformed id: %d", r.status)
	}
	// A client's request id is echoed back.
	r := e.doRawHeaders("GET", "/healthz", map[string]string{"X-Request-Id": "abc-123"})
	if got := r.header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id = %q, want the client's", got)
	}
}

func (e *env) doRawCT(method, path, authz, ct, body string) response {
	e.t.Helper()
	return e.doRawHeaders(method, path, map[string]string{"Authorization": authz, "Content-Type": ct}, body)
}

func (e *env) doRawHeaders(method, path string, h map[string]string, body ...string) response {
	e.t.Helper()
	var rd *strings.Reader
	if len(body) > 0 {
		rd = strings.NewReader(body[0])
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: data}
	validateResponse(e.t, e.router, req, r)
	return r
}
