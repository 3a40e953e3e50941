package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Real servers for the tests: Debian's mosquitto and nats-server, started
// as children on free loopback ports with generated configuration, and
// killed in t.Cleanup.

func findBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: apt-get install -y %s", name, pkg)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server is a child process that can be stopped and started again with the
// same configuration (same ports).
type server struct {
	t     *testing.T
	name  string
	args  []string
	ports []int
	log   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func newServer(t *testing.T, bin string, args []string, ports []int, log string) *server {
	s := &server{t: t, name: filepath.Base(bin), args: append([]string{bin}, args...), ports: ports, log: log}
	t.Cleanup(s.stop)
	s.start()
	return s
}

func (s *server) start() {
	s.t.Helper()
	lf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range s.ports {
		for {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				s.t.Fatalf("%s exited at start:\n%s", s.name, s.logText())
			default:
			}
			if time.Now().After(deadline) {
				s.stop()
				s.t.Fatalf("%s not listening on %d after 10s:\n%s", s.name, p, s.logText())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// stop kills the server and waits for it (SIGKILL: like a crash, and no
// clean goodbye to the clients).
func (s *server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("%s (pid %d) did not exit after SIGKILL", s.name, cmd.Process.Pid)
	}
	// The port must be free before a restart.
	for _, p := range s.ports {
		for i := 0; i < 500; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err == nil {
				l.Close()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (s *server) logText() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// mosquitto is a broker with three listeners: anonymous, password+ACL and
// TLS with client certificates. max_packet_size is 2048.
type mosquitto struct {
	*server
	dir                       string
	anon, auth, tls           int
	caFile, certFile, keyFile string // the client's
	otherCA                   string // a CA that did not sign the server
}

const maxPacket = 2048

func startMosquitto(t *testing.T) *mosquitto {
	t.Helper()
	bin := findBinary(t, "mosquitto", "mosquitto")
	passwd := findBinary(t, "mosquitto_passwd", "mosquitto")
	dir := t.TempDir()
	m := &mosquitto{dir: dir, anon: freePort(t), auth: freePort(t), tls: freePort(t)}
	pw := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pw, "alice", "secret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	acl := filepath.Join(dir, "acl")
	write(t, acl, "user alice\ntopic write allowed/#\ntopic read allowed/#\n")
	pki := newPKI(t, dir)
	m.caFile, m.certFile, m.keyFile, m.otherCA = pki.ca, pki.clientCert, pki.clientKey, pki.otherCA
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`per_listener_settings true
persistence false
user %s
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
max_packet_size %d

listener %d 127.0.0.1
allow_anonymous true

listener %d 127.0.0.1
allow_anonymous false
password_file %s
acl_file %s

listener %d 127.0.0.1
allow_anonymous true
cafile %s
certfile %s
keyfile %s
require_certificate true
`, u.Username, maxPacket, m.anon, m.auth, pw, acl, m.tls, pki.ca, pki.serverCert, pki.serverKey)
	cf := filepath.Join(dir, "mosquitto.conf")
	write(t, cf, conf)
	m.server = newServer(t, bin, []string{"-c", cf}, []int{m.anon, m.auth, m.tls}, filepath.Join(dir, "mosquitto.log"))
	return m
}

func (m *mosquitto) addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// natsServer is nats-server with JetStream; conf is extra configuration.
type natsServer struct {
	*server
	port int
}

func startNATS(t *testing.T, extra string) *natsServer {
	t.Helper()
	bin := findBinary(t, "nats-server", "nats-server")
	dir := t.TempDir()
	n := &natsServer{port: freePort(t)}
	conf := fmt.Sprintf(`listen: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 256MB
}
%s
`, n.port, filepath.Join(dir, "js"), extra)
	cf := filepath.Join(dir, "nats.conf")
	write(t, cf, conf)
	n.server = newServer(t, bin, []string{"-c", cf}, []int{n.port}, filepath.Join(dir, "nats.log"))
	return n
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey, otherCA string
}

// newPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate signed by it, and an unrelated CA.
func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	cert := func(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	writeCert := func(name string, c *x509.Certificate) string {
		p := filepath.Join(dir, name)
		write(t, p, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		write(t, p, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
		return p
	}
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	}
	caKey, otherKey, srvKey, cliKey := newKey(), newKey(), newKey(), newKey()
	ca := cert(caTmpl("flick test CA"), nil, caKey, caKey)
	other := cert(caTmpl("unrelated CA"), nil, otherKey, otherKey)
	srv := cert(&x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, srvKey, caKey)
	cli := cert(&x509.Certificate{Subject: pkix.Name{CommonName: "hub-1"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, cliKey, caKey)
	return pki{
		ca: writeCert("ca.pem", ca), otherCA: writeCert("other-ca.pem", other),
		serverCert: writeCert("server.pem", srv), serverKey: writeKey("server.key", srvKey),
		clientCert: writeCert("client.pem", cli), clientKey: writeKey("client.key", cliKey),
	}
}

// waitFor polls cond every 10ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func msgs(prefix string, n int, topic string) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = Message{ID: fmt.Sprintf("%s-%03d", prefix, i), Topic: topic, Payload: []byte(fmt.Sprintf("payload %d", i)),
			Attrs: map[string]string{"seq": strconv.Itoa(i)}}
	}
	return out
}
