package manage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/common/tlsutil"
)

// tlsCommand makes the cluster CA and the daemons' certificates, locally (no
// manager is involved; the CA key never leaves the operator's directory).
func tlsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create the cluster CA and daemon certificates for mutual TLS",
		Long: `Mutual TLS between vdc daemons (RPC, and raft between managers) uses one
cluster CA. Every daemon gets a certificate of its role (manager, hva, sta,
scheduler) with the addresses peers dial it at; each daemon's config file
names ca.pem, its certificate and its key in its "security" section.

  vdc-manage tls ca create --dir /etc/vdc/tls
  vdc-manage tls cert create --dir /etc/vdc/tls --role manager --name m1 --host 10.0.0.11
  vdc-manage tls cert create --dir /etc/vdc/tls --role hva --name hva.demo1 --host 10.0.0.21`,
	}
	cmd.AddCommand(tlsCACommand(a), tlsCertCommand(a))
	return cmd
}

func tlsCACommand(a *app) *cobra.Command {
	ca := &cobra.Command{Use: "ca", Short: "The cluster CA"}
	var (
		dir, name string
		days      int
		force     bool
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create the cluster CA: DIR/ca.pem and DIR/ca-key.pem (ECDSA P-256)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath := filepath.Join(dir, tlsutil.CAFile), filepath.Join(dir, tlsutil.CAKeyFile)
			if err := refuseOverwrite(force, certPath, keyPath); err != nil {
				return err
			}
			c, k, err := tlsutil.NewCA(name, time.Duration(days)*24*time.Hour, time.Now())
			if err != nil {
				return err
			}
			if err := writeFiles(dir, map[string][]byte{certPath: c}, map[string][]byte{keyPath: k}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "created %s and %s (keep the key offline; it signs daemon certificates)\n", certPath, keyPath)
			return err
		},
	}
	f := create.Flags()
	f.StringVar(&dir, "dir", ".", "directory to write ca.pem and ca-key.pem to")
	f.StringVar(&name, "name", "vdc cluster CA", "CA common name")
	f.IntVar(&days, "days", int(tlsutil.DefaultCAValidity/(24*time.Hour)), "validity in days")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	ca.AddCommand(create)
	return ca
}

func tlsCertCommand(a *app) *cobra.Command {
	cert := &cobra.Command{Use: "cert", Short: "Daemon certificates"}
	var (
		dir, caDir, role, name string
		hosts                  []string
		days                   int
		force                  bool
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Sign a daemon certificate: DIR/<name>.pem and DIR/<name>-key.pem",
		Long: `Sign a certificate for one daemon with the cluster CA. --role is the daemon's
role (manager, hva, sta, scheduler), which peers check: only managers serve
the collectors and take part in raft, only managers deliver jobs to agents,
only hvas report instances, and so on. --host (repeatable) lists the IP
addresses and DNS names peers dial the daemon at: its advertised RPC (and,
for managers, raft) address must be among them. Without --host the
certificate is for this host's loopback only (127.0.0.1, ::1, localhost).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caDir == "" {
				caDir = dir
			}
			caCert, err := os.ReadFile(filepath.Join(caDir, tlsutil.CAFile))
			if err != nil {
				return fmt.Errorf("read the CA (create it with 'vdc-manage tls ca create'): %w", err)
			}
			caKey, err := os.ReadFile(filepath.Join(caDir, tlsutil.CAKeyFile))
			if err != nil {
				return fmt.Errorf("read the CA key: %w", err)
			}
			if len(hosts) == 0 {
				hosts = []string{"127.0.0.1", "::1", "localhost"}
			}
			certPath, keyPath := filepath.Join(dir, tlsutil.CertFile(name)), filepath.Join(dir, tlsutil.KeyFile(name))
			if err := refuseOverwrite(force, certPath, keyPath); err != nil {
				return err
			}
			c, k, err := tlsutil.NewCert(caCert, caKey, tlsutil.CertRequest{
				Role: role, Name: name, Hosts: hosts, Validity: time.Duration(days) * 24 * time.Hour,
			}, time.Now())
			if err != nil {
				return err
			}
			files := map[string][]byte{certPath: c}
			if caDir != dir {
				// The daemon needs ca.pem beside its certificate.
				files[filepath.Join(dir, tlsutil.CAFile)] = caCert
			}
			if err := writeFiles(dir, files, map[string][]byte{keyPath: k}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "created %s and %s (role %s, hosts %s)\n", certPath, keyPath, role, strings.Join(hosts, ","))
			return err
		},
	}
	f := create.Flags()
	f.StringVar(&dir, "dir", ".", "directory to write the certificate and key to")
	f.StringVar(&caDir, "ca-dir", "", "directory holding ca.pem and ca-key.pem (default: --dir)")
	f.StringVar(&role, "role", "", "daemon role: manager, hva, sta or scheduler (required)")
	f.StringVar(&name, "name", "", "daemon name: a manager's node name or an agent's node id (required)")
	f.StringArrayVar(&hosts, "host", nil, "IP address or DNS name peers reach the daemon at (repeatable)")
	f.IntVar(&days, "days", int(tlsutil.DefaultCertValidity/(24*time.Hour)), "validity in days")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	_ = create.MarkFlagRequired("role")
	_ = create.MarkFlagRequired("name")
	cert.AddCommand(create)
	return cert
}

func refuseOverwrite(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists (use --force to replace it)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writeFiles writes public files 0644 and secret ones 0600.
func writeFiles(dir string, public, secret map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for p, b := range public {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	for p, b := range secret {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
		// WriteFile keeps the mode of a file it replaces (--force).
		if err := os.Chmod(p, 0o600); err != nil {
			return err
		}
	}
	return nil
}
