package api

import (
	"bytes"
	"encoding/json"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"reflect"
	"strings"
	"sync"
)

// encoding/json matches object keys to struct fields ignoring case, so
// {"NAME": …} would fill Name. The API's field names are exact: checkFieldNames
// walks the body alongside the target type and refuses any key that is not
// a field's exact name (unknown_field), at every level that decodes into a
// struct. Objects that decode into maps (a configuration document, an error
// report's context) are the caller's own and are not checked.

// fieldsOf maps a struct type to its JSON field names and their types.
var fieldsOf sync.Map // reflect.Type → map[string]reflect.Type

func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldsOf.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" && !strings.Contains(tag, ",") {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					m[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldsOf.Store(t, m)
	return m
}

// checkFieldNames refuses keys of b that name t's fields in another case.
// b has passed checkJSON, so it is one well-formed value.
func checkFieldNames(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return jsonError(err)
	}
	return walkFieldNames(v, t, "")
}

func walkFieldNames(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return nil // decodes itself, by its own rules
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return nil // a map or any: the caller's own keys
		}
		fields := jsonFields(t)
		for k, sub := range x {
			ft, ok := fields[k]
			if !ok {
				return httpx.Err(400, "unknown_field", "field \""+path+k+"\" is not accepted (field names are case-sensitive)")
			}
			if err := walkFieldNames(sub, ft, path+k+"."); err != nil {
				return err
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return nil
		}
		for _, sub := range x {
			if err := walkFieldNames(sub, t.Elem(), path); err != nil {
				return err
			}
		}
	}
	return nil
}
