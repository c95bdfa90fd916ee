package api

import (
	"errors"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"testing"
)

// FuzzDecodeJSON drives the strict decoder with arbitrary bodies: it never
// panics, and every refusal is a 4xx apiError.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://a.atlassian.net","jiraVersion":"1","addinVersion":"1"}`,
		`{"conversationId":"c","mailId":"<m@x>","userId":"u","app":"Jira","jira":{"id":"1","key":"AB-1","projectId":"2"}}`,
		`{"a":1,"a":2}`, `[[[[`, `{"jira":{"id":1}}`, "\xff", `{} {}`, `{"license":null}`, `"s"`, `1e999`,
		`{"name":"Mia","email":"mia@example.com"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&registerBody{}, &mappingBody{}, &patchBody{}, &userBody{}} {
			err := strictUnmarshal(b, v)
			if err == nil {
				continue
			}
			var ae *httpx.Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Code == "" {
				t.Fatalf("%q: refusal is not a 4xx apiError: %v", b, err)
			}
		}
		if err := checkJSON(b); err != nil {
			var ae *httpx.Error
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("checkJSON(%q) = %v", b, err)
			}
		}
	})
}
