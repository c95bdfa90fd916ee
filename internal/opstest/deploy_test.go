package opstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/deploy/healthcheck/probe"
	"github.com/jira-relay/jira-relay/internal/seal"
	"go.yaml.in/yaml/v3"
)

// settingEnvNames are the environment variables the relay reads:
// RELAY_CONFIG and RELAY_<KEY> for every key of configs/relay.yaml.
func settingEnvNames(t testing.TB) map[string]bool {
	t.Helper()
	var keys map[string]any
	if err := yaml.Unmarshal(configs.ExampleYAML(), &keys); err != nil {
		t.Fatalf("configs/relay.yaml: %v", err)
	}
	out := map[string]bool{"RELAY_CONFIG": true}
	for k := range keys {
		out["RELAY_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))] = true
	}
	if len(out) < 30 {
		t.Fatalf("configs/relay.yaml has only %d keys", len(out))
	}
	return out
}

// yamlDocs decodes every document of a (multi-document) YAML file.
func yamlDocs(t testing.TB, rel string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readRepoFile(t, rel)))
	var out []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no YAML document", rel)
	}
	return out
}

// deployFiles lists the files under deploy/ (slash paths from the repo
// root), without the pinned tools module's go.sum.
func deployFiles(t testing.TB) []string {
	t.Helper()
	root := repoRoot(t)
	var out []string
	err := filepath.WalkDir(filepath.Join(root, "deploy"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if filepath.Base(p) != "go.sum" {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dig walks nested mappings and lists: dig(m, "spec", "template", 0, "name").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// TestDeployYAMLParses: every YAML file under deploy/ parses, every
// document of it.
func TestDeployYAMLParses(t *testing.T) {
	t.Parallel()
	n := 0
	for _, f := range deployFiles(t) {
		if strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".yml") {
			n += len(yamlDocs(t, f))
		}
	}
	if n < 8 {
		t.Errorf("only %d YAML documents under deploy/", n)
	}
}

var relayEnvRe = regexp.MustCompile(`\bRELAY_[A-Z0-9_]+\b`)

// TestDeployEnvNames: every RELAY_ variable named in deploy/, the
// Dockerfile and the runbook (settings and comments alike) is a setting of
// the relay, which refuses to start on a RELAY_ variable that is not.
func TestDeployEnvNames(t *testing.T) {
	t.Parallel()
	known := settingEnvNames(t)
	files := append(deployFiles(t), "Dockerfile", ".dockerignore", "docs/operations.md")
	seen := 0
	for _, f := range files {
		for i, line := range strings.Split(string(readRepoFile(t, f)), "\n") {
			for _, name := range relayEnvRe.FindAllString(line, -1) {
				seen++
				if !known[name] {
					t.Errorf("%s:%d: %s is not a setting of the relay (configs/relay.yaml)", f, i+1, name)
				}
			}
		}
	}
	if seen < 10 {
		t.Errorf("only %d RELAY_ names found under deploy/ and in the Dockerfile", seen)
	}
}

// k8sObject is one manifest.
type k8sObject struct {
	File string
	Doc  map[string]any
}

func (o k8sObject) kind() string { return str(o.Doc["kind"]) }
func (o k8sObject) name() string { return str(dig(o.Doc, "metadata", "name")) }

func loadK8s(t testing.TB) map[string]k8sObject {
	t.Helper()
	out := map[string]k8sObject{}
	for _, f := range deployFiles(t) {
		if !strings.HasPrefix(f, "deploy/kubernetes/") || !strings.HasSuffix(f, ".yaml") {
			continue
		}
		for _, d := range yamlDocs(t, f) {
			o := k8sObject{File: f, Doc: d}
			if o.kind() == "" || str(d["apiVersion"]) == "" || (o.name() == "" && o.kind() != "Kustomization") {
				t.Errorf("%s: a document without apiVersion, kind and metadata.name", f)
				continue
			}
			key := o.kind() + "/" + o.name()
			if _, dup := out[key]; dup {
				t.Errorf("%s: %s is defined twice", f, key)
			}
			out[key] = o
		}
	}
	return out
}

// TestKubernetesManifests checks deploy/kubernetes as a whole: the objects
// are there and point at each other correctly, the pod is hardened as the
// restricted Pod Security Standard requires, and the relay would start with
// the ConfigMap, the environment and the secrets it is given.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	objs := loadK8s(t)
	need := func(key string) map[string]any {
		o, ok := objs[key]
		if !ok {
			t.Fatalf("deploy/kubernetes has no %s", key)
		}
		return o.Doc
	}
	kust := need("Kustomization/")
	dep := need("Deployment/relay")
	svc := need("Service/relay")
	pdb := need("PodDisruptionBudget/relay")
	cm := need("ConfigMap/relay-config")
	ns := need("Namespace/jira-relay")

	// The kustomization applies every manifest but the secrets example.
	var res []string
	for _, r := range dig(kust, "resources").([]any) {
		res = append(res, "deploy/kubernetes/"+str(r))
	}
	for _, o := range objs {
		if o.kind() == "Kustomization" {
			continue
		}
		listed := slices.Contains(res, o.File)
		if o.kind() == "Secret" && listed {
			t.Errorf("%s: secrets must not be applied from the repository", o.File)
		}
		if o.kind() != "Secret" && !listed {
			t.Errorf("%s is not in kustomization.yaml's resources", o.File)
		}
	}
	if str(kust["namespace"]) != "jira-relay" || str(dig(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce")) != "restricted" {
		t.Error("namespace jira-relay with the restricted Pod Security Standard")
	}

	// Deployment: a fleet of three relays at least.
	if n, _ := dig(dep, "spec", "replicas").(int); n < 3 {
		t.Errorf("replicas %v, want 3 or more", dig(dep, "spec", "replicas"))
	}
	podLabels, _ := dig(dep, "spec", "template", "metadata", "labels").(map[string]any)
	selects := func(what string, sel any) {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s: no selector", what)
		}
		for k, v := range m {
			if podLabels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pod labels %v", what, k, v, podLabels)
			}
		}
	}
	selects("Deployment", dig(dep, "spec", "selector", "matchLabels"))
	selects("Service", dig(svc, "spec", "selector"))
	selects("PodDisruptionBudget", dig(pdb, "spec", "selector", "matchLabels"))

	// NetworkPolicy: the admin port (pprof has no authentication) is open
	// to one namespace only, never to every pod.
	np := need("NetworkPolicy/relay")
	selects("NetworkPolicy", dig(np, "spec", "podSelector", "matchLabels"))
	adminRules := 0
	for _, r := range dig(np, "spec", "ingress").([]any) {
		rule, _ := r.(map[string]any)
		from, _ := rule["from"].([]any)
		for _, p := range rule["ports"].([]any) {
			if str(dig(p, "port")) == "admin" {
				adminRules++
				if len(from) == 0 || dig(from[0], "namespaceSelector", "matchLabels") == nil {
					t.Error("NetworkPolicy: the admin port must be open to a named namespace only")
				}
			}
		}
	}
	if adminRules != 1 {
		t.Errorf("NetworkPolicy: %d rules for the admin port, want 1", adminRules)
	}
	if n, _ := dig(pdb, "spec", "minAvailable").(int); n < 1 || n >= dig(dep, "spec", "replicas").(int) {
		t.Errorf("PodDisruptionBudget minAvailable %v: at least 1, fewer than the replicas", dig(pdb, "spec", "minAvailable"))
	}

	pod := dig(dep, "spec", "template", "spec").(map[string]any)
	if dig(pod, "securityContext", "runAsNonRoot") != true || str(dig(pod, "securityContext", "seccompProfile", "type")) != "RuntimeDefault" {
		t.Error("pod securityContext: runAsNonRoot true and seccompProfile RuntimeDefault")
	}
	if len(dig(pod, "containers").([]any)) != 1 {
		t.Fatal("one container")
	}
	c := dig(pod, "containers", 0).(map[string]any)
	sc, _ := c["securityContext"].(map[string]any)
	if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || sc["runAsNonRoot"] != true ||
		!slices.Equal(dig(sc, "capabilities", "drop").([]any), []any{"ALL"}) {
		t.Errorf("container securityContext: readOnlyRootFilesystem, no privilege escalation, runAsNonRoot, drop ALL: %v", sc)
	}
	if uid := dig(sc, "runAsUser"); uid != 65532 || dig(pod, "securityContext", "runAsUser") != 65532 {
		t.Errorf("runAsUser %v: the image's user is 65532", uid)
	}
	for _, k := range [][]string{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if str(dig(c, "resources", k[0], k[1])) == "" {
			t.Errorf("resources.%s.%s is not set", k[0], k[1])
		}
	}
	ports := map[string]int{}
	for _, p := range c["ports"].([]any) {
		ports[str(dig(p, "name"))] = dig(p, "containerPort").(int)
	}
	for probeName, wantPath := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		p := dig(c, probeName, "httpGet")
		if str(dig(p, "path")) != wantPath {
			t.Errorf("%s: path %v, want %s", probeName, dig(p, "path"), wantPath)
		}
		if _, ok := ports[str(dig(p, "port"))]; !ok {
			t.Errorf("%s: port %v is not a container port", probeName, dig(p, "port"))
		}
	}
	if _, ok := ports[str(dig(svc, "spec", "ports", 0, "targetPort"))]; !ok {
		t.Errorf("Service targetPort %v is not a container port", dig(svc, "spec", "ports", 0, "targetPort"))
	}
	for _, p := range dig(svc, "spec", "ports").([]any) {
		if str(dig(p, "targetPort")) == "admin" || dig(p, "targetPort") == ports["admin"] {
			t.Error("the Service must not expose the admin port")
		}
	}
	images, _ := kust["images"].([]any)
	if str(c["image"]) != str(dig(images, 0, "name")) {
		t.Errorf("container image %v is not the kustomization's image name %v", c["image"], dig(images, 0, "name"))
	}

	// The environment: settings only, secrets from the example's Secrets.
	secrets := map[string]map[string]any{}
	for _, o := range objs {
		if o.kind() == "Secret" {
			secrets[o.name()], _ = o.Doc["stringData"].(map[string]any)
			if str(dig(o.Doc, "metadata", "namespace")) != "jira-relay" {
				t.Errorf("%s: Secret %s is not in namespace jira-relay", o.File, o.name())
			}
		}
	}
	known := settingEnvNames(t)
	var environ []string
	configPath, keyFile := "", ""
	const podName = "relay-7d9f8c6b5d-x2k4q" // a pod of Deployment relay
	for _, e := range c["env"].([]any) {
		name := str(dig(e, "name"))
		if !known[name] {
			t.Errorf("env %s is not a setting", name)
		}
		val := str(dig(e, "value"))
		if ref := dig(e, "valueFrom", "fieldRef"); ref != nil {
			// The downward API: only the pod's name, as a pod of the
			// Deployment is called.
			if str(dig(ref, "fieldPath")) != "metadata.name" {
				t.Errorf("env %s: fieldRef %v, want metadata.name", name, dig(ref, "fieldPath"))
			}
			val = podName
		}
		if ref := dig(e, "valueFrom", "secretKeyRef"); ref != nil {
			s, ok := secrets[str(dig(ref, "name"))]
			if !ok {
				t.Errorf("env %s: Secret %v is not in secrets.example.yaml", name, dig(ref, "name"))
			}
			v, ok := s[str(dig(ref, "key"))]
			if !ok {
				t.Errorf("env %s: Secret %v has no key %v", name, dig(ref, "name"), dig(ref, "key"))
			}
			val = str(v)
		}
		if name == "RELAY_CONFIG" {
			configPath = val
			continue
		}
		if name == "RELAY_ENCRYPTION_KEY_FILE" {
			keyFile = val // a temporary file below
			continue
		}
		environ = append(environ, name+"="+val)
	}
	for _, want := range []string{"RELAY_REGISTRATION_TOKEN", "RELAY_ETCD_USERNAME", "RELAY_ETCD_PASSWORD"} {
		if !slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, want+"=") }) {
			t.Errorf("env %s (a secret) is not set", want)
		}
	}

	// Mounts: the ConfigMap at RELAY_CONFIG, the encryption key file's
	// Secret at RELAY_ENCRYPTION_KEY_FILE, the TLS Secret where relay.yaml
	// looks for its files.
	mounts := map[string]string{} // volume name -> mount path
	for _, m := range c["volumeMounts"].([]any) {
		mounts[str(dig(m, "name"))] = str(dig(m, "mountPath"))
		if strings.HasPrefix(str(dig(m, "mountPath")), "/etc/relay/") && dig(m, "readOnly") != true {
			t.Errorf("volumeMount %v: readOnly", dig(m, "name"))
		}
	}
	if keyFile == "" {
		t.Error("env RELAY_ENCRYPTION_KEY_FILE is not set: encryption at rest must be on in production")
	}
	secretDirs := map[string]string{} // mount path -> Secret, but the key file's
	keyFileMode := fs.FileMode(0)     // the key file's mode as the relay sees it
	for _, v := range pod["volumes"].([]any) {
		name := str(dig(v, "name"))
		if cmName := dig(v, "configMap", "name"); cmName != nil {
			if str(cmName) != "relay-config" || path.Join(mounts[name], str(dig(v, "configMap", "items", 0, "path"))) != configPath ||
				str(dig(v, "configMap", "items", 0, "key")) != "relay.yaml" {
				t.Errorf("RELAY_CONFIG %s is not relay.yaml of ConfigMap relay-config as mounted", configPath)
			}
		}
		sn := dig(v, "secret", "secretName")
		if sn == nil {
			continue
		}
		if keyFile == "" || mounts[name] != path.Dir(keyFile) {
			secretDirs[mounts[name]] = str(sn)
			continue
		}
		// The key file's Secret: required, so that no pod runs without it,
		// and the file is the Secret's key of its name (or the item
		// projected there).
		if dig(v, "secret", "optional") == true {
			t.Errorf("volume %s: Secret %v is optional; the key file must be required", name, sn)
		}
		secretKey, mode := path.Base(keyFile), dig(v, "secret", "defaultMode")
		if items, _ := dig(v, "secret", "items").([]any); items != nil {
			secretKey = ""
			for _, it := range items {
				if str(dig(it, "path")) == path.Base(keyFile) {
					secretKey = str(dig(it, "key"))
					if m := dig(it, "mode"); m != nil {
						mode = m
					}
				}
			}
			if secretKey == "" {
				t.Errorf("volume %s: no item is projected at %s", name, path.Base(keyFile))
			}
		}
		placeholder, ok := secrets[str(sn)][secretKey]
		if !ok {
			t.Errorf("RELAY_ENCRYPTION_KEY_FILE %s: Secret %v (secrets.example.yaml) has no key %q", keyFile, sn, secretKey)
		}
		// The example holds a placeholder, not a key anyone could use.
		if _, err := seal.Parse([]byte(str(placeholder))); err == nil {
			t.Errorf("secrets.example.yaml: Secret %v holds a usable key file; keep a placeholder there", sn)
		}
		// The Secret's files belong to root: the relay (65532) reads the key
		// file through the pod's fsGroup, with which the kubelet makes a
		// Secret's files group-readable (mode | 0440). The relay refuses a
		// key file readable by others.
		m, ok := mode.(int)
		if m != 0o400 && m != 0o440 {
			shown := "unset (0644)"
			if ok {
				shown = fmt.Sprintf("%#o", m)
			}
			t.Errorf("volume %s: mode %s for the key file; want 0400 or 0440 (the relay refuses one readable by others)", name, shown)
		}
		if _, ok := dig(pod, "securityContext", "fsGroup").(int); !ok {
			t.Errorf("volume %s: no pod fsGroup, so the key file (root's) is unreadable by the relay's user", name)
		}
		keyFileMode = fs.FileMode(m) | 0o440
	}
	if keyFile != "" && keyFileMode == 0 {
		t.Errorf("RELAY_ENCRYPTION_KEY_FILE %s is not in a mounted Secret", keyFile)
	}
	relayYAML := str(dig(cm, "data", "relay.yaml"))
	var fileCfg map[string]any
	if err := yaml.Unmarshal([]byte(relayYAML), &fileCfg); err != nil {
		t.Fatalf("ConfigMap relay.yaml: %v", err)
	}
	// Files the relay reads must be in the mounted Secret; for the load
	// below they become temporary files.
	tmp := t.TempDir()
	for _, k := range []string{"etcd-ca", "etcd-cert", "etcd-key", "tls-cert", "tls-key", "upstream-ca"} {
		p := str(fileCfg[k])
		if p == "" {
			continue
		}
		if tlsSecret, ok := secretDirs[path.Dir(p)]; !ok {
			t.Errorf("relay.yaml %s: %s is not in a mounted Secret (%v)", k, p, secretDirs)
		} else if _, ok := secrets[tlsSecret][path.Base(p)]; !ok {
			t.Errorf("relay.yaml %s: Secret %s has no key %s", k, tlsSecret, path.Base(p))
		}
		local := filepath.Join(tmp, path.Base(p))
		if err := os.WriteFile(local, []byte("PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
		fileCfg[k] = local
	}
	tb, _ := yaml.Marshal(fileCfg)
	cfgFile := filepath.Join(tmp, "relay.yaml")
	if err := os.WriteFile(cfgFile, tb, 0o600); err != nil {
		t.Fatal(err)
	}
	environ = append(environ, "RELAY_CONFIG="+cfgFile)
	if keyFile != "" {
		// A real key file, with the mode the mounted one has.
		environ = append(environ, "RELAY_ENCRYPTION_KEY_FILE="+writeKeyFile(t, tmp, keyFileMode))
	}
	cfg, err := configs.LoadEnviron(nil, environ)
	if err != nil {
		t.Fatalf("the relay would not start with the Kubernetes configuration: %v", err)
	}
	if cfg.EncryptionKeyFile == "" {
		t.Error("the relay would store values unencrypted (no encryption-key-file)")
	}
	if len(cfg.EtcdEndpoints) < 3 || cfg.EtcdCA == "" || cfg.EtcdUsername == "" || cfg.RegistrationToken == "" {
		t.Errorf("an external etcd cluster with TLS and a user, and a registration token: %+v", cfg.Redacted())
	}
	// Each pod names itself in the fleet after its pod: unique while it
	// runs, new for every pod.
	if cfg.RelayID != podName {
		t.Errorf("relay-id %q: want the pod's name (RELAY_RELAY_ID from the downward API's metadata.name)", cfg.RelayID)
	}
	portOf := func(hostport string) int {
		_, p, _ := net.SplitHostPort(hostport)
		n, _ := strconv.Atoi(p)
		return n
	}
	if portOf(cfg.Listen) != ports["http"] {
		t.Errorf("listen %s is not the http container port %d", cfg.Listen, ports["http"])
	}
	if host, _, _ := net.SplitHostPort(cfg.AdminListen); host != "0.0.0.0" || portOf(cfg.AdminListen) != ports["admin"] ||
		str(dig(dep, "spec", "template", "metadata", "annotations", "prometheus.io/port")) != strconv.Itoa(ports["admin"]) {
		t.Errorf("admin-listen %q must bind 0.0.0.0 on the admin container port %d that the scrape annotation names", cfg.AdminListen, ports["admin"])
	}

	// Shutdown: the grace period covers the preStop pause and the drain.
	grace, _ := dig(pod, "terminationGracePeriodSeconds").(int)
	pause, _ := dig(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	if time.Duration(grace)*time.Second < time.Duration(pause)*time.Second+cfg.DrainTimeout+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d < preStop %ds + drain-timeout %s + 5s", grace, pause, cfg.DrainTimeout)
	}
}

// writeKeyFile writes a key file as `relay keys generate` makes one, with
// mode perm, and returns its path.
func writeKeyFile(t testing.TB, dir string, perm fs.FileMode) string {
	t.Helper()
	entry, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "keys-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("keys:\n" + entry); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(perm); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// composeEnv is a service's environment as a map (compose allows a list too).
func composeEnv(t testing.TB, svc map[string]any) map[string]string {
	out := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			out[k] = str(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(str(kv), "=")
			out[k] = v
		}
	case nil:
	default:
		t.Fatalf("environment of type %T", e)
	}
	return out
}

var interpolationRe = regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}`)

// TestCompose checks deploy/docker-compose.yml (with the fakejira override):
// a three-member etcd cluster that agrees on its members, of the etcd
// version the relay is built with, and a fleet of three relays that list
// every member under one prefix, each with its own relay id, wait for them,
// drain before they are killed, seal values with the key file of a compose
// secret that git ignores, and would start with their environment.
func TestCompose(t *testing.T) {
	t.Parallel()
	base := yamlDocs(t, "deploy/docker-compose.yml")[0]
	over := yamlDocs(t, "deploy/docker-compose.fakejira.yml")[0]
	services, _ := base["services"].(map[string]any)

	gomod := string(readRepoFile(t, "go.mod"))
	etcdMinor := regexp.MustCompile(`go\.etcd\.io/etcd/server/v3 v(\d+\.\d+)\.`).FindStringSubmatch(gomod)[1]

	var etcds, relays []string
	for name, s := range services {
		img := str(dig(s, "image"))
		switch {
		case strings.HasPrefix(img, "quay.io/coreos/etcd:"):
			etcds = append(etcds, name)
			if !strings.HasPrefix(img, "quay.io/coreos/etcd:v"+etcdMinor+".") {
				t.Errorf("%s: image %s is not etcd %s, the relay's", name, img, etcdMinor)
			}
		case dig(s, "build", "target") == "relay":
			relays = append(relays, name)
		}
	}
	slices.Sort(etcds)
	slices.Sort(relays)
	if len(etcds) != 3 || len(relays) < 3 {
		t.Fatalf("etcd members %v, relays %v: want 3 and 3 or more", etcds, relays)
	}

	// The members agree on the cluster.
	var clientURLs []string
	for _, name := range etcds {
		env := composeEnv(t, services[name].(map[string]any))
		if env["ETCD_NAME"] != name {
			t.Errorf("%s: ETCD_NAME %q", name, env["ETCD_NAME"])
		}
		want := name + "=" + env["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
		if !slices.Contains(strings.Split(env["ETCD_INITIAL_CLUSTER"], ","), want) || len(strings.Split(env["ETCD_INITIAL_CLUSTER"], ",")) != 3 {
			t.Errorf("%s: ETCD_INITIAL_CLUSTER %q lacks %s", name, env["ETCD_INITIAL_CLUSTER"], want)
		}
		if env["ETCD_ADVERTISE_CLIENT_URLS"] != "http://"+name+":2379" {
			t.Errorf("%s: ETCD_ADVERTISE_CLIENT_URLS %q", name, env["ETCD_ADVERTISE_CLIENT_URLS"])
		}
		clientURLs = append(clientURLs, env["ETCD_ADVERTISE_CLIENT_URLS"])
		if dig(services[name], "healthcheck", "test") == nil {
			t.Errorf("%s: no healthcheck", name)
		}
		if dig(services[name], "ports") != nil {
			t.Errorf("%s: etcd must not be published", name)
		}
	}

	// The encryption key file: a compose secret from a file next to the
	// compose file that git ignores, so that no key is committed.
	keyFiles := map[string]string{} // secret -> file, from the repo root
	topSecrets, _ := dig(base, "secrets").(map[string]any)
	for sn, def := range topSecrets {
		if f := str(dig(def, "file")); f != "" {
			keyFiles[sn] = path.Join("deploy", f)
		}
	}
	if len(keyFiles) == 0 {
		t.Error("docker-compose.yml defines no file secret for the relays' encryption key file")
	}
	for _, f := range keyFiles {
		ignored := exec.Command("git", "-C", repoRoot(t), "check-ignore", "-q", f).Run()
		var exit *exec.ExitError
		switch {
		case errors.As(ignored, &exit) && exit.ExitCode() == 1:
			t.Errorf("%s (a compose secret) is not ignored by git, or is committed: a key must never be", f)
		case ignored != nil:
			t.Logf("git check-ignore %s: %v (not a git work tree?)", f, ignored)
		}
	}
	tmp := t.TempDir()

	known := settingEnvNames(t)
	hostPorts := map[string]string{}
	relayIDs := map[string]string{} // relay id -> service
	prefixes := map[string]bool{}
	for _, name := range relays {
		s := services[name].(map[string]any)
		env := composeEnv(t, s)
		for k, v := range composeEnv(t, dig(over, "services", name).(map[string]any)) {
			env[k] = v
		}
		// The secrets the relay gets: /run/secrets/<target>.
		mounted := map[string]string{} // path in the container -> secret
		for _, sec := range append(anyList(s["secrets"]), anyList(dig(over, "services", name, "secrets"))...) {
			source, target := str(sec), ""
			if m, ok := sec.(map[string]any); ok {
				source, target = str(m["source"]), str(m["target"])
			}
			if target == "" {
				target = source
			}
			if !path.IsAbs(target) {
				target = "/run/secrets/" + target
			}
			mounted[target] = source
		}
		keyFile := env["RELAY_ENCRYPTION_KEY_FILE"]
		if sn, ok := mounted[keyFile]; !ok || keyFiles[sn] == "" {
			t.Errorf("%s: RELAY_ENCRYPTION_KEY_FILE %q is not a file secret the relay gets (%v)", name, keyFile, mounted)
		}
		var environ []string
		for k, v := range env {
			if !known[k] {
				t.Errorf("%s: %s is not a setting", name, k)
			}
			if k == "RELAY_ENCRYPTION_KEY_FILE" && v != "" {
				// A real key file, as the chmod in the compose file makes it.
				v = writeKeyFile(t, tmp, 0o640)
			}
			environ = append(environ, k+"="+interpolationRe.ReplaceAllString(v, "value-of-$1"))
		}
		cfg, err := configs.LoadEnviron(nil, environ)
		if err != nil {
			t.Errorf("%s: the relay would not start with this environment: %v", name, err)
			continue
		}
		got := slices.Clone(cfg.EtcdEndpoints)
		slices.Sort(got)
		if !slices.Equal(got, clientURLs) {
			t.Errorf("%s: etcd endpoints %v, want every member %v", name, got, clientURLs)
		}
		// One fleet: one prefix, and a relay id of each relay's own.
		prefixes[cfg.EtcdPrefix] = true
		if cfg.RelayID == "" {
			t.Errorf("%s: no RELAY_RELAY_ID: name each relay of the fleet", name)
		} else if other, dup := relayIDs[cfg.RelayID]; dup {
			t.Errorf("%s and %s are both relay %q: the fleet would count them as one", name, other, cfg.RelayID)
		}
		relayIDs[cfg.RelayID] = name
		if cfg.EncryptionKeyFile == "" {
			t.Errorf("%s: the relay would store values unencrypted (no RELAY_ENCRYPTION_KEY_FILE)", name)
		}
		if cfg.RegistrationToken == "" || !strings.HasPrefix(env["RELAY_REGISTRATION_TOKEN"], "${RELAY_REGISTRATION_TOKEN:?") {
			t.Errorf("%s: the registration token must come from the environment and be required", name)
		}
		if host, _, _ := net.SplitHostPort(cfg.AdminListen); host != "0.0.0.0" {
			t.Errorf("%s: admin-listen %q cannot be scraped from the compose network", name, cfg.AdminListen)
		}
		if !slices.Contains(cfg.AllowedUpstreams, "fakejira") {
			t.Errorf("%s: with the override, fakejira must be an allowed upstream", name)
		}
		for _, e := range etcds {
			if str(dig(s, "depends_on", e, "condition")) != "service_healthy" {
				t.Errorf("%s: must wait for %s to be healthy", name, e)
			}
		}
		grace, err := time.ParseDuration(str(s["stop_grace_period"]))
		if err != nil || grace < cfg.DrainTimeout+5*time.Second {
			t.Errorf("%s: stop_grace_period %v is shorter than the drain (%s) + 5s", name, s["stop_grace_period"], cfg.DrainTimeout)
		}
		if s["read_only"] != true {
			t.Errorf("%s: read_only", name)
		}
		for _, p := range s["ports"].([]any) {
			hp, cp, _ := strings.Cut(str(p), ":")
			if cp != "8080" {
				t.Errorf("%s: publishes %v; only the front door (8080) is published", name, p)
			}
			if other, dup := hostPorts[hp]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, hp)
			}
			hostPorts[hp] = name
		}
	}
	if len(prefixes) != 1 {
		t.Errorf("the relays use the etcd prefixes %v: one fleet shares one", slices.Sorted(mapKeys(prefixes)))
	}
	if str(dig(over, "services", "fakejira", "build", "target")) != "fakejira" {
		t.Error("the override builds the fakejira target of the Dockerfile")
	}
}

// anyList is v as a YAML list, or nil.
func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}

// dockerInstr is one instruction of the Dockerfile.
type dockerInstr struct {
	Line int
	Cmd  string // upper case
	Args string
}

func parseDockerfile(t testing.TB) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(string(readRepoFile(t, "Dockerfile")), "\n") {
		trim := strings.TrimSpace(l)
		if cur.Len() == 0 && (trim == "" || strings.HasPrefix(trim, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trim, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trim, "\\") {
			cur.WriteString(strings.TrimSuffix(trim, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(trim)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDockerfile checks the image's recipe without a Docker engine: a Go
// builder of go.mod's version, static binaries built with the flags the
// issue asks for from packages that exist, a distroless final stage running
// as 65532 with /data as its volume and the healthcheck, the ports, and only
// real settings in its environment.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t)
	gomod := string(readRepoFile(t, "go.mod"))
	goMinor := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)[1]

	type stage struct {
		from, name string
		ins        []dockerInstr
	}
	var stages []*stage
	args := map[string]string{}
	for _, in := range ins {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := &stage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.name = f[i+1]
					i++
				default:
					st.from = f[i]
				}
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.Cmd == "ARG" {
				k, v, _ := strings.Cut(in.Args, "=")
				args[k] = v
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a final image", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]
	builderGo := strings.TrimPrefix(builder.from, "golang:")
	if v, ok := strings.CutPrefix(builderGo, "${GO_VERSION}"); ok {
		builderGo = args["GO_VERSION"] + v
	}
	if !strings.HasPrefix(builder.from, "golang:") || (builderGo != goMinor && !strings.HasPrefix(builderGo, goMinor+".") && !strings.HasPrefix(builderGo, goMinor+"-")) {
		t.Errorf("builder FROM %s with GO_VERSION %q; want golang of go.mod's go %s", builder.from, args["GO_VERSION"], goMinor)
	}
	if final.name != "relay" || !strings.HasPrefix(final.from, "gcr.io/distroless/static") {
		t.Errorf("the final stage (the default target) is %s FROM %s; want the relay on distroless/static", final.name, final.from)
	}

	// The builds.
	built := map[string]string{} // output path -> package
	// A static binary (CGO_ENABLED=0) for the target platform, built from
	// one package into one output; other flags are the builder's choice.
	buildRe := regexp.MustCompile(`\bgo build\b.*?\s-o\s+(\S+)\s+(?:.*\s)?(\./[\w./-]+)\s*$`)
	for _, in := range builder.ins {
		if in.Cmd != "RUN" || !strings.Contains(in.Args, "go build") {
			continue
		}
		for _, cmd := range strings.Split(in.Args, "&&") {
			if !strings.Contains(cmd, "go build") {
				continue
			}
			m := buildRe.FindStringSubmatch(strings.TrimSpace(cmd))
			if m == nil || !strings.Contains(cmd, "CGO_ENABLED=0") {
				t.Errorf("Dockerfile:%d: %q does not build a static binary (CGO_ENABLED=0 go build -o OUT ./PKG)", in.Line, strings.TrimSpace(cmd))
				continue
			}
			if !strings.Contains(cmd, "GOOS=$TARGETOS GOARCH=$TARGETARCH") {
				t.Errorf("Dockerfile:%d: %s is not built for the target platform", in.Line, m[2])
			}
			built[m[1]] = m[2]
		}
	}
	var pkgs []string
	for _, p := range built {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	if !slices.Equal(pkgs, []string{"./cmd/fakejira", "./cmd/relay", "./deploy/healthcheck"}) {
		t.Errorf("packages built: %v", pkgs)
	}
	out, err := exec.Command("go", append([]string{"list", "-C", repoRoot(t), "-f", "{{.Name}}"}, pkgs...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != strings.TrimSpace(strings.Repeat("main\n", len(pkgs))) {
		t.Errorf("go list %v: %v: %s", pkgs, err, out)
	}

	// The final stage.
	env := map[string]string{}
	var exposed []string
	copied := map[string]bool{}
	var user, volume, health, entry, workdir string
	known := settingEnvNames(t)
	for _, in := range final.ins {
		switch in.Cmd {
		case "ENV":
			for _, kv := range strings.Fields(in.Args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Errorf("Dockerfile:%d: ENV %s: write KEY=value", in.Line, kv)
				}
				env[k] = v
				if strings.HasPrefix(k, "RELAY_") && !known[k] {
					t.Errorf("Dockerfile:%d: %s is not a setting", in.Line, k)
				}
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.Args)...)
		case "USER":
			user = in.Args
		case "VOLUME":
			volume = in.Args
		case "WORKDIR":
			workdir = in.Args
		case "HEALTHCHECK":
			health = in.Args
		case "ENTRYPOINT":
			entry = in.Args
		case "COPY":
			f := strings.Fields(in.Args)
			if slices.Contains(f, "--from=build") {
				copied[f[len(f)-2]] = true
			}
		}
	}
	// The relay runs as a user that is not root (by name or by id).
	if uid, _, _ := strings.Cut(strings.TrimSpace(user), ":"); uid == "" || uid == "root" || strings.Trim(uid, "0") == "" {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	if !slices.Contains(exposed, "8080") || !slices.Contains(exposed, "9090") {
		t.Errorf("EXPOSE %v, want 8080 and 9090", exposed)
	}
	// The data dir is the default ./data under WORKDIR /, and the image sets
	// no RELAY_* variable: the environment would silently outrank a --config
	// file (flag > env > file).
	if vol := strings.Trim(volume, `[]" `); vol != "/data" || workdir != "/" || configs.Defaults().DataDir != "./data" {
		t.Errorf("VOLUME %s, WORKDIR %q, default data dir %q: want the data dir at /data", volume, workdir, configs.Defaults().DataDir)
	}
	for k := range env {
		if strings.HasPrefix(k, "RELAY_") {
			t.Errorf("the image sets %s, which would override a --config file", k)
		}
	}
	if !strings.Contains(health, "CMD") || !strings.Contains(health, `/healthcheck`) || !copied["/out/healthcheck"] || built["/out/healthcheck"] != "./deploy/healthcheck" {
		t.Errorf("HEALTHCHECK %q must run /healthcheck, built from ./deploy/healthcheck", health)
	}
	if !strings.HasPrefix(strings.TrimSpace(entry), `["/relay"`) || !copied["/out/relay"] || built["/out/relay"] != "./cmd/relay" {
		t.Errorf("ENTRYPOINT %s must run /relay, built from ./cmd/relay", entry)
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	if _, err := configs.LoadEnviron(nil, environ); err != nil {
		t.Errorf("the relay would not start with the image's environment: %v", err)
	}
	if env["RELAY_LISTEN"] != "" && !strings.HasSuffix(env["RELAY_LISTEN"], ":8080") {
		t.Errorf("RELAY_LISTEN %s is not the exposed 8080", env["RELAY_LISTEN"])
	}
}

// TestHealthcheck runs the image's healthcheck (its check, in-process)
// against a live relay and against what must make it fail.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil, nil)
	addr := strings.TrimPrefix(r.URL, "http://")
	_, port, _ := net.SplitHostPort(addr)
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	var stderr bytes.Buffer
	run := func(args []string, e map[string]string) int {
		stderr.Reset()
		return probe.Run(args, env(e), &stderr)
	}
	if code := run(nil, map[string]string{"RELAY_LISTEN": ":" + port}); code != 0 {
		t.Errorf("healthy relay on RELAY_LISTEN :%s: exit %d: %s", port, code, stderr.String())
	}
	if code := run(nil, map[string]string{"RELAY_LISTEN": "0.0.0.0:" + port}); code != 0 {
		t.Errorf("healthy relay on 0.0.0.0:%s: exit %d: %s", port, code, stderr.String())
	}
	if code := run([]string{r.URL + "/healthz"}, nil); code != 0 {
		t.Errorf("healthy relay by URL: exit %d: %s", code, stderr.String())
	}
	if code := run([]string{r.URL + "/v1/nothing"}, nil); code != 1 {
		t.Errorf("a 404: exit %d, want 1", code)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closed, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	if code := run(nil, map[string]string{"RELAY_LISTEN": ":" + closed}); code != 1 || !strings.Contains(stderr.String(), "healthcheck:") {
		t.Errorf("nothing listening: exit %d (%s), want 1", code, stderr.String())
	}
	if code := run(nil, map[string]string{"RELAY_LISTEN": "nonsense"}); code != 1 {
		t.Errorf("a bad RELAY_LISTEN: exit %d, want 1", code)
	}
	if got, _ := probe.TargetURL(nil, env(nil)); got != "http://127.0.0.1:8080/healthz" {
		t.Errorf("default target %s", got)
	}
	if got, _ := probe.TargetURL(nil, env(map[string]string{"RELAY_LISTEN": ":8443", "RELAY_TLS_CERT": "/tls.crt"})); got != "https://127.0.0.1:8443/healthz" {
		t.Errorf("TLS target %s", got)
	}
}

// dockerignore is .dockerignore's patterns, matched as Docker's build
// context does: each pattern is a path.Match glob on the slash path from the
// context root, "**" spans directories, a pattern that matches a directory
// excludes what it holds, "!" re-includes, and the last match wins.
type dockerignore []struct {
	re      *regexp.Regexp
	exclude bool
}

func loadDockerignore(t testing.TB) dockerignore {
	var out dockerignore
	for _, l := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		excl := true
		if strings.HasPrefix(l, "!") {
			excl, l = false, strings.TrimSpace(l[1:])
		}
		l = strings.TrimPrefix(path.Clean("/"+l), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case strings.HasPrefix(l[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(l[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$") // a matched directory takes its contents along
		out = append(out, struct {
			re      *regexp.Regexp
			exclude bool
		}{regexp.MustCompile(re.String()), excl})
	}
	return out
}

func (d dockerignore) excluded(rel string) bool {
	ex := false
	for _, p := range d {
		if p.re.MatchString(rel) {
			ex = p.exclude
		}
	}
	return ex
}

// TestDockerContext: .dockerignore keeps every file the image's builds need
// (go.mod, go.sum, and each Go and embedded file of every package of this
// module that the three commands import) and leaves out the repository's
// history, local data, binaries, node_modules and secrets.
func TestDockerContext(t *testing.T) {
	t.Parallel()
	ig := loadDockerignore(t)
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,GoFiles,EmbedFiles,Module", "./cmd/relay", "./cmd/fakejira", "./deploy/healthcheck")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	need := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath, Dir     string
			GoFiles, EmbedFiles []string
			Module              *struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/jira-relay/jira-relay" {
			continue
		}
		rel, _ := filepath.Rel(root, p.Dir)
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			need = append(need, path.Join(filepath.ToSlash(rel), f))
		}
	}
	if len(need) < 20 {
		t.Fatalf("only %d files needed? %v", len(need), need)
	}
	for _, f := range need {
		if ig.excluded(f) {
			t.Errorf(".dockerignore leaves out %s, which the image's build needs", f)
		}
	}
	for _, f := range []string{".git/config", "data/etcd/member/snap/db", "relay/relay", "proxy.test", "clients/js/node_modules/x/index.js",
		"deploy/kubernetes/secrets.example.yaml", "tls/relay.key", "certs/ca.pem", ".env", "bench-out/x.json", "docs/openapi.yaml",
		"deploy/relay-keys.yaml", "etc/relay/keys.yaml"} {
		if !ig.excluded(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}
