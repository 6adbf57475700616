package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// OpenAPI is the whole API as an OpenAPI 3 document: what GET /openapi.yaml
// serves and what request bodies are validated against. Tests validate every
// response against it too, so it cannot drift from the code.
//
//go:embed openapi.yaml
var OpenAPI []byte

// LoadSpec parses and validates OpenAPI.
func LoadSpec(ctx context.Context) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate openapi.yaml: %w", err)
	}
	return doc, nil
}

// bodySchemas are the request body schemas the server checks, by name.
type bodySchemas map[string]*openapi3.Schema

func newBodySchemas(doc *openapi3.T) (bodySchemas, error) {
	out := bodySchemas{}
	for _, name := range []string{"SecurityGroupWrite", "PrefixListWrite"} {
		ref := doc.Components.Schemas[name]
		if ref == nil || ref.Value == nil {
			return nil, fmt.Errorf("openapi.yaml: schema %s missing", name)
		}
		out[name] = ref.Value
	}
	return out, nil
}

// maxBody bounds request bodies: a 250-rule group with long descriptions
// is well under 1 MiB.
const maxBody = 4 << 20

// decode reads a JSON body, checks it against the named schema of the
// OpenAPI document, decodes it into v and runs v's domain validation.
// Failures are *cp.Error: 400 for bodies that are not JSON or have wrong
// JSON types, 422 for everything else, each naming the field by path.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, schema string, v interface{ Validate() error }) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return cp.Errorf(cp.CodeUnsupportedMediaType, "", "The body must be JSON sent with Content-Type: application/json, not %q.", mt)
		}
	}
	body, err := readBody(w, r)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return cp.Errorf(cp.CodeBodyTooLarge, "", "The body is larger than %d bytes.", maxBody)
		}
		return cp.Errorf(cp.CodeInvalidJSON, "", "The body could not be read.")
	}
	return decodeBody(body, s.schemas[schema], v)
}

// readBody reads the whole body, at most maxBody bytes, into one buffer
// sized by Content-Length when the client sent it (io.ReadAll would grow
// a 35 KB body through eight copies).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, maxBody)
	if n := r.ContentLength; n > 0 && n <= maxBody {
		buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
		_, err := buf.ReadFrom(rd)
		return buf.Bytes(), err
	}
	return io.ReadAll(rd)
}

// decodeBody decodes body into v and runs v's domain validation. A group
// or prefix list takes the typed decoder (decode.go); what it or the
// domain checks refuse, and every other body, takes the schema path, which
// words each error.
func decodeBody(body []byte, schema *openapi3.Schema, v interface{ Validate() error }) error {
	switch v := v.(type) {
	case *cp.SecurityGroupWrite:
		var in cp.SecurityGroupWrite
		if decodeGroup(body, &in) == nil && in.Validate() == nil {
			*v = in
			return nil
		}
	case *cp.PrefixListWrite:
		var in cp.PrefixListWrite
		if decodePrefixList(body, &in) == nil && in.Validate() == nil {
			*v = in
			return nil
		}
	}
	return schemaDecode(body, schema, v)
}

// schemaDecode is decodeBody's schema path: the body is parsed into a tree,
// checked against openapi.yaml with kin-openapi, then decoded and checked
// by the domain rules.
func schemaDecode(body []byte, schema *openapi3.Schema, v interface{ Validate() error }) error {
	if !utf8.Valid(body) {
		return cp.Errorf(cp.CodeInvalidJSON, "", "The body is not valid UTF-8 JSON.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return invalidJSON(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return cp.Errorf(cp.CodeInvalidJSON, "", "The body has data after its JSON value; send exactly one JSON object.")
	}
	if _, ok := doc.(map[string]any); !ok {
		return cp.Errorf(cp.CodeInvalidType, "", "The body must be a JSON object.")
	}
	// Valid bodies (the common case) take one fail-fast pass; only a
	// failing body is visited again collecting every finding, to report
	// the most useful one.
	if err := schema.VisitJSON(doc, openapi3.VisitAsRequest()); err != nil {
		if all := schema.VisitJSON(doc, openapi3.MultiErrors(), openapi3.VisitAsRequest()); all != nil {
			err = all
		}
		return schemaError(err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		// The schema admitted it, so this is a number the Go type cannot
		// hold, such as 1e400.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return cp.Errorf(cp.CodeInvalidType, te.Field, "%s has a value that is not a %s.", te.Field, te.Type)
		}
		return invalidJSON(err)
	}
	return v.Validate()
}

func invalidJSON(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return cp.Errorf(cp.CodeInvalidJSON, "", "The body is not valid JSON: %v (at byte %d).", se, se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return cp.Errorf(cp.CodeInvalidJSON, "", "The body is empty or cut short; send a JSON object.")
	}
	return cp.Errorf(cp.CodeInvalidJSON, "", "The body is not valid JSON.")
}

// schemaError turns kin-openapi's findings into the most useful single
// *cp.Error: a wrong type first (400), then the first other finding (422).
func schemaError(err error) error {
	var all []*openapi3.SchemaError
	var collect func(error)
	collect = func(e error) {
		var me openapi3.MultiError
		if errors.As(e, &me) {
			for _, x := range me {
				collect(x)
			}
			return
		}
		var se *openapi3.SchemaError
		if errors.As(e, &se) {
			all = append(all, se)
		}
	}
	collect(err)
	if len(all) == 0 {
		return cp.Errorf(cp.CodeInvalidValue, "", "The body does not match the API's schema.")
	}
	for _, se := range all {
		if se.SchemaField == "type" || se.SchemaField == "nullable" {
			return translate(se)
		}
	}
	best := all[0]
	for _, se := range all {
		if rank(se) < rank(best) {
			best = se
		}
	}
	return translate(best)
}

func rank(se *openapi3.SchemaError) int {
	switch se.SchemaField {
	case "maxItems":
		return 0
	case "required", "properties":
		return 1
	}
	return 2
}

// fieldPath renders a JSON pointer as rules[2].port.
func fieldPath(ptr []string) string {
	var b strings.Builder
	for _, p := range ptr {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func translate(se *openapi3.SchemaError) *cp.Error {
	path := fieldPath(se.JSONPointer())
	sch := se.Schema
	switch se.SchemaField {
	case "type", "nullable":
		want := "a value of another type"
		if sch != nil && sch.Type != nil && len(*sch.Type) > 0 {
			want = article((*sch.Type)[0])
		}
		return cp.Errorf(cp.CodeInvalidType, path, "%s must be %s, not %s.", path, want, jsonKind(se.Value))
	case "required":
		return cp.Errorf(cp.CodeParameterMissing, path, "%s is required.", path)
	case "properties":
		var name string
		fmt.Sscanf(se.Reason, "property %q is unsupported", &name)
		field := name
		if path != "" {
			field = path + "." + name
		}
		allowed := ""
		if sch != nil {
			var names []string
			for k := range sch.Properties {
				names = append(names, k)
			}
			sortStrings(names)
			allowed = " Allowed fields: " + strings.Join(names, ", ") + "."
		}
		return cp.Errorf(cp.CodeUnknownField, field, "%s is not a field of this object.%s", field, allowed)
	case "maxItems":
		code := cp.CodeInvalidValue
		switch path {
		case "rules":
			code = cp.CodeTooManyRules
		case "prefixes":
			code = cp.CodeTooManyPrefixes
		case "sites":
			code = cp.CodeTooManySites
		}
		n := 0
		if a, ok := se.Value.([]any); ok {
			n = len(a)
		}
		return cp.Errorf(code, path, "%s has %d items; at most %d are allowed.", path, n, derefU64(sch.MaxItems))
	case "enum":
		var opts []string
		for _, e := range sch.Enum {
			opts = append(opts, fmt.Sprintf("%q", e))
		}
		return cp.Errorf(cp.CodeInvalidValue, path, "%s %s is not valid; use one of %s.", path, show(se.Value), strings.Join(opts, ", "))
	case "minimum", "maximum":
		return cp.Errorf(cp.CodeInvalidValue, path, "%s %s is outside %s-%s.", path, show(se.Value), num(sch.Min), num(sch.Max))
	case "minLength", "maxLength":
		n := 0
		if s, ok := se.Value.(string); ok {
			n = utf8.RuneCountInString(s)
		}
		if sch.MinLength == 0 {
			return cp.Errorf(cp.CodeInvalidValue, path, "%s is %d characters long; at most %d are allowed.", path, n, derefU64(sch.MaxLength))
		}
		return cp.Errorf(cp.CodeInvalidValue, path, "%s is %d characters long; it must be %d to %d characters.", path, n, sch.MinLength, derefU64(sch.MaxLength))
	case "pattern":
		if strings.HasPrefix(path, "sites[") {
			return cp.Errorf(cp.CodeInvalidSite, path, "%s %s is not a site id; use site_ followed by 1 to 64 letters and digits, such as site_hq1.", path, show(se.Value))
		}
		return cp.Errorf(cp.CodeInvalidValue, path, "%s %s does not match %s.", path, show(se.Value), sch.Pattern)
	}
	return cp.Errorf(cp.CodeInvalidValue, path, "%s is not valid: %s.", path, se.Reason)
}

func article(t string) string {
	switch t {
	case "integer", "array", "object":
		return "an " + t
	}
	return "a " + t
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "another type"
}

// show renders a rejected value for a message, shortened so a huge value
// cannot blow up the response.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "the value"
	}
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

func num(p *float64) string {
	if p == nil {
		return "?"
	}
	return fmt.Sprintf("%g", *p)
}

func derefU64(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
