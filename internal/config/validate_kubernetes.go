package config

// dnsLabel and dnsSubdomain are the shapes Kubernetes accepts for namespace
// and workload names (RFC 1123), checked here so that a typo is a config
// error with its line rather than a 404 on every reconcile. They are loops,
// not regular expressions: `{0,251}` compiles into a program of 200 KB that
// every ebb process would build at start.
func dnsLabel(s string) bool { return rfc1123(s, 63, false) }

func dnsSubdomain(s string) bool { return rfc1123(s, 253, true) }

// rfc1123 reports whether s is 1 to max lower-case letters, digits and '-'
// (and '.' if dots), beginning and ending with a letter or digit.
func rfc1123(s string, max int, dots bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || dots && c == '.') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// validateKubernetes checks what a kubernetes pool needs, and names the
// settings the pod template overrides silently.
func validateKubernetes(p *Pool, path string, add addFunc, required func(path, msg string)) {
	k := &p.Kubernetes
	kpath := path + ".kubernetes"
	switch {
	case k.Deployment == "" && k.StatefulSet == "":
		required(kpath+".deployment", "required for target kubernetes: the name of the Deployment (or set statefulset) whose pods run ebb worker for this pool")
	case k.Deployment != "" && k.StatefulSet != "":
		add(kpath+".statefulset", "set deployment or statefulset, not both")
	}
	for _, f := range []struct{ key, v string }{{"deployment", k.Deployment}, {"statefulset", k.StatefulSet}} {
		if f.v != "" && !dnsSubdomain(f.v) {
			add(kpath+"."+f.key, "%q is not a Kubernetes object name (lower case letters, digits, '-' and '.', at most 253)", f.v)
		}
	}
	if k.Namespace != "" && !dnsLabel(k.Namespace) {
		add(kpath+".namespace", "%q is not a Kubernetes namespace name (lower case letters, digits and '-', at most 63)", k.Namespace)
	}
	if len(p.Command) > 0 {
		add(path+".command", "the pod template says what the pods run; leave command out of a kubernetes pool")
	}
	if len(p.Env) > 0 {
		add(path+".env", "pods take their environment from the pod template; leave env out of a kubernetes pool")
	}
}
