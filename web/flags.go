package web

import (
	"flag"
	"os"
	"strings"
)

// Flags are the command-line flags shared by `flotilla web` and
// `flotilla-operator serve-web`.
type Flags struct {
	Addr                           string
	token, adminToken              string
	userHeader, groupsHeader       string
	adminUsers, adminGroups        string
	Kubeconfig, Namespace, NATSURL string
}

// RegisterFlags adds the dashboard's flags to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.Addr, "addr", DefaultAddr, "listen address")
	fs.StringVar(&f.token, "token", os.Getenv("FLOTILLA_WEB_TOKEN"), "require this bearer token (env FLOTILLA_WEB_TOKEN); read-only when --admin-token is set")
	fs.StringVar(&f.adminToken, "admin-token", os.Getenv("FLOTILLA_WEB_ADMIN_TOKEN"), "bearer token with admin rights (env FLOTILLA_WEB_ADMIN_TOKEN)")
	fs.StringVar(&f.userHeader, "auth-header", "", "trust this header for the user name, set by an authenticating proxy such as oauth2-proxy (X-Forwarded-User)")
	fs.StringVar(&f.groupsHeader, "groups-header", "", "trust this header for the user's comma-separated groups (X-Forwarded-Groups)")
	fs.StringVar(&f.adminUsers, "admin-users", "", "comma-separated users with admin rights (with --auth-header; default: every user)")
	fs.StringVar(&f.adminGroups, "admin-groups", "", "comma-separated groups with admin rights (with --groups-header)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster running the operator (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "default"
	}
	fs.StringVar(&f.Namespace, "namespace", ns, "namespace of the Device, Deployment and AgentRollout objects (env POD_NAMESPACE)")
	fs.StringVar(&f.NATSURL, "nats", os.Getenv("NATS_URL"), "NATS URL for heartbeats, device info and commands (env NATS_URL)")
	return f
}

// Auth is the authentication the flags ask for.
func (f *Flags) Auth() AuthConfig {
	return AuthConfig{Token: f.token, AdminToken: f.adminToken, UserHeader: f.userHeader,
		GroupsHeader: f.groupsHeader, AdminUsers: splitList(f.adminUsers), AdminGroups: splitList(f.adminGroups)}
}

// Real is the real-fleet configuration the flags ask for.
func (f *Flags) Real() RealOptions {
	return RealOptions{Kubeconfig: f.Kubeconfig, Namespace: f.Namespace, NATSURL: f.NATSURL}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
