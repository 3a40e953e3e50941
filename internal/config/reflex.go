package config

import (
	"fmt"
	"net"

	"github.com/flick-edge/flick/internal/broker"
	"github.com/flick-edge/flick/internal/errdefs"
)

// Reflex configures the event side: the embedded MQTT broker, HTTP
// triggers and the metrics endpoint. Its keys sit at the top level of the
// config file beside the image keys.
type Reflex struct {
	MQTT        MQTT   `yaml:"mqtt"`
	HTTPListen  string `yaml:"http-listen"`  // TCP address for http: triggers ("" = only on the API socket)
	MetricsAddr string `yaml:"metrics-addr"` // Prometheus /metrics ("" = only on the API socket)
	HubID       string `yaml:"hub-id"`       // this hub's name upstream ({hub} in route destinations); default: the host name
}

// MQTT is the embedded broker's section ("mqtt:" in the file).
type MQTT struct {
	Listen         []string               `yaml:"listen"`          // --mqtt-listen
	TLSListen      []string               `yaml:"tls-listen"`      // --mqtt-tls-listen
	TLSCert        string                 `yaml:"tls-cert"`        // --mqtt-tls-cert
	TLSKey         string                 `yaml:"tls-key"`         // --mqtt-tls-key
	MaxPacketSize  string                 `yaml:"max-packet-size"` // --mqtt-max-packet-size
	AllowAnonymous bool                   `yaml:"allow-anonymous"` // --mqtt-allow-anonymous
	Users          map[string]broker.User `yaml:"users"`           // file only: passwords do not belong on a command line
}

// ReflexDefaults are the built-in values.
func ReflexDefaults() Reflex {
	return Reflex{
		MQTT:        MQTT{Listen: []string{"127.0.0.1:1883"}, MaxPacketSize: "256KiB"},
		HTTPListen:  "127.0.0.1:8080",
		MetricsAddr: "127.0.0.1:9323",
	}
}

// Validate checks the reflex section.
func (r Reflex) Validate() error {
	for _, a := range append(append([]string{}, r.MQTT.Listen...), r.MQTT.TLSListen...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return errdefs.NewInvalidArgument(fmt.Errorf("mqtt listen address %q: want host:port like 127.0.0.1:1883", a))
		}
	}
	if len(r.MQTT.TLSListen) > 0 && (r.MQTT.TLSCert == "" || r.MQTT.TLSKey == "") {
		return errdefs.NewInvalidArgument(fmt.Errorf("mqtt tls-listen needs tls-cert and tls-key"))
	}
	for _, a := range []string{r.HTTPListen, r.MetricsAddr} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return errdefs.NewInvalidArgument(fmt.Errorf("listen address %q: want host:port, or \"\" to serve it only on the API socket", a))
		}
	}
	if _, err := r.MaxPacketBytes(); err != nil {
		return err
	}
	for name, u := range r.MQTT.Users {
		if u.Password == "" {
			return errdefs.NewInvalidArgument(fmt.Errorf("mqtt user %q has no password", name))
		}
		for f, a := range u.ACL {
			switch a {
			case broker.Read, broker.Write, broker.ReadWrite, broker.Deny:
			default:
				return errdefs.NewInvalidArgument(fmt.Errorf("mqtt user %q: acl %q: access %q, want read, write, readwrite or deny", name, f, a))
			}
		}
	}
	return nil
}

// MaxPacketBytes parses the MQTT packet-size limit.
func (r Reflex) MaxPacketBytes() (uint32, error) {
	n, err := parseSize(r.MQTT.MaxPacketSize)
	if err != nil || n < 1024 || n > 256<<20 {
		return 0, errdefs.NewInvalidArgument(fmt.Errorf("mqtt max-packet-size %q: want a size between 1KiB and 256MiB", r.MQTT.MaxPacketSize))
	}
	return uint32(n), nil
}
