package fakejira

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	msgNotAuthenticated = "You are not authenticated. Authentication required to perform this operation."
	msgNoIssue          = "Issue does not exist or you do not have permission to see it."

	// Identity of the fake user every authenticated request acts as.
	fakeAccountID   = "5b10ac8d82e05b22cc7d4ef5"
	fakeDisplayName = "Relay Test User"
	fakeEmail       = "relay-test@example.com"

	// jiraTime is how Jira formats timestamps: 2026-11-27T10:00:00.000+0000.
	jiraTime = "2006-01-02T15:04:05.000-0700"
)

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// writeJSON answers status with v as JSON, like Jira's
// application/json;charset=UTF-8.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"errorMessages":["Internal server error"],"errors":{}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorCollection is Jira's error body.
type errorCollection struct {
	ErrorMessages []string          `json:"errorMessages"`
	Errors        map[string]string `json:"errors"`
}

// writeError answers {"errorMessages":[msg],"errors":{}}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorCollection{ErrorMessages: []string{msg}, Errors: map[string]string{}})
}

// userJSON is a Jira user as embedded in other objects.
type userJSON struct {
	Self         string            `json:"self"`
	AccountID    string            `json:"accountId"`
	EmailAddress string            `json:"emailAddress,omitempty"`
	AvatarURLs   map[string]string `json:"avatarUrls"`
	DisplayName  string            `json:"displayName"`
	Active       bool              `json:"active"`
	TimeZone     string            `json:"timeZone"`
	AccountType  string            `json:"accountType"`
}

// emailFrom is the user name of Basic credentials, else the fake address.
func emailFrom(auth string) string {
	if enc, ok := strings.CutPrefix(auth, "Basic "); ok {
		if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc)); err == nil {
			if user, _, ok := strings.Cut(string(raw), ":"); ok && user != "" {
				return user
			}
		}
	}
	return fakeEmail
}

func (s *Server) user(auth string) userJSON {
	avatar := "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/default.png"
	return userJSON{
		Self:         s.URL() + "/rest/api/3/user?accountId=" + url.QueryEscape(fakeAccountID),
		AccountID:    fakeAccountID,
		EmailAddress: emailFrom(auth),
		AvatarURLs:   map[string]string{"48x48": avatar, "24x24": avatar, "16x16": avatar, "32x32": avatar},
		DisplayName:  fakeDisplayName,
		Active:       true,
		TimeZone:     "Etc/UTC",
		AccountType:  "atlassian",
	}
}

// attachmentJSON is an attachment as Jira returns it.
type attachmentJSON struct {
	Self      string   `json:"self"`
	ID        string   `json:"id"`
	Filename  string   `json:"filename"`
	Author    userJSON `json:"author"`
	Created   string   `json:"created"`
	Size      int64    `json:"size"`
	MimeType  string   `json:"mimeType"`
	Content   string   `json:"content"`
	Thumbnail string   `json:"thumbnail,omitempty"`
}

func (s *Server) attachmentJSON(id, filename, mimeType string, size int64, created time.Time, auth string) attachmentJSON {
	base := s.URL() + "/rest/api/3/attachment/"
	a := attachmentJSON{
		Self:     base + id,
		ID:       id,
		Filename: filename,
		Author:   s.user(auth),
		Created:  created.UTC().Format(jiraTime),
		Size:     size,
		MimeType: mimeType,
		Content:  base + "content/" + id,
	}
	if strings.HasPrefix(mimeType, "image/") {
		a.Thumbnail = base + "thumbnail/" + id
	}
	return a
}

// handleServerInfo is GET {base}/rest/api/3/serverInfo (anonymous).
func (s *Server) handleServerInfo(w http.ResponseWriter, r *http.Request, _ *Fault) {
	writeJSON(w, http.StatusOK, struct {
		BaseURL        string            `json:"baseUrl"`
		DisplayURL     string            `json:"displayUrl"`
		Version        string            `json:"version"`
		VersionNumbers []int             `json:"versionNumbers"`
		DeploymentType string            `json:"deploymentType"`
		BuildNumber    int               `json:"buildNumber"`
		BuildDate      string            `json:"buildDate"`
		ServerTime     string            `json:"serverTime"`
		ScmInfo        string            `json:"scmInfo"`
		ServerTitle    string            `json:"serverTitle"`
		DefaultLocale  map[string]string `json:"defaultLocale"`
		ServerTimeZone string            `json:"serverTimeZone"`
	}{
		BaseURL:        s.URL(),
		DisplayURL:     s.URL(),
		Version:        "1001.0.0-SNAPSHOT",
		VersionNumbers: []int{1001, 0, 0},
		DeploymentType: "Cloud",
		BuildNumber:    100250,
		BuildDate:      "2026-01-05T00:00:00.000+0000",
		ServerTime:     time.Now().UTC().Format(jiraTime),
		ScmInfo:        "fakejira",
		ServerTitle:    "Jira",
		DefaultLocale:  map[string]string{"locale": "en_US"},
		ServerTimeZone: "Etc/UTC",
	})
}

// handleMyself is GET {base}/rest/api/3/myself (needs Authorization).
func (s *Server) handleMyself(w http.ResponseWriter, r *http.Request, _ *Fault) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		writeError(w, http.StatusUnauthorized, msgNotAuthenticated)
		return
	}
	u := s.user(auth)
	type list struct {
		Size  int   `json:"size"`
		Items []any `json:"items"`
	}
	writeJSON(w, http.StatusOK, struct {
		userJSON
		Locale           string `json:"locale"`
		Groups           list   `json:"groups"`
		ApplicationRoles list   `json:"applicationRoles"`
		Expand           string `json:"expand"`
	}{
		userJSON:         u,
		Locale:           "en_US",
		Groups:           list{Items: []any{}},
		ApplicationRoles: list{Items: []any{}},
		Expand:           "groups,applicationRoles",
	})
}

// handleMeta is GET {base}/rest/api/3/attachment/meta.
func (s *Server) handleMeta(w http.ResponseWriter, r *http.Request, _ *Fault) {
	writeJSON(w, http.StatusOK, struct {
		Enabled     bool  `json:"enabled"`
		UploadLimit int64 `json:"uploadLimit"`
	}{true, s.opts.UploadLimit})
}
