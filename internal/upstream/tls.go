package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// tlsConfig builds the client TLS configuration of r: the CA file replaces
// the system roots, the certificate and key are offered to the server.
func tlsConfig(r resolved) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: r.host, MinVersion: tls.VersionTLS12}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: CA file: %w", r.URL, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream %s: CA file %s: no PEM certificate in it", r.URL, r.CAFile)
		}
		cfg.RootCAs = pool
	}
	if r.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: client certificate: %w", r.URL, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
