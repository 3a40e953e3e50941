package cli

import (
	"github.com/flick-edge/flick/internal/config"
	"github.com/spf13/pflag"
)

func reflexFlags(f *pflag.FlagSet, r *config.Reflex, def config.Reflex) {
	f.StringSliceVar(&r.MQTT.Listen, "mqtt-listen", def.MQTT.Listen, "embedded MQTT broker listeners (host:port, repeatable; \"\" for none); devices publish here")
	f.StringSliceVar(&r.MQTT.TLSListen, "mqtt-tls-listen", nil, "MQTT over TLS listeners (host:port); needs --mqtt-tls-cert and --mqtt-tls-key")
	f.StringVar(&r.MQTT.TLSCert, "mqtt-tls-cert", "", "PEM certificate for --mqtt-tls-listen")
	f.StringVar(&r.MQTT.TLSKey, "mqtt-tls-key", "", "PEM private key for --mqtt-tls-listen")
	f.StringVar(&r.MQTT.MaxPacketSize, "mqtt-max-packet-size", def.MQTT.MaxPacketSize, "largest MQTT packet accepted; bigger payloads are refused by the broker")
	f.BoolVar(&r.MQTT.AllowAnonymous, "mqtt-allow-anonymous", false, "with users configured (config file, mqtt.users), also accept clients without a username")
	f.StringVar(&r.HTTPListen, "http-listen", def.HTTPListen, "TCP address serving http: function triggers (\"\" = API socket only, under /flick/v1/hooks/)")
	f.StringVar(&r.MetricsAddr, "metrics-addr", def.MetricsAddr, "TCP address serving Prometheus /metrics (\"\" = API socket only, at /metrics)")
	f.StringVar(&r.HubID, "hub-id", "", "this hub's id upstream: {hub} in route destinations (default: the host name)")
}

func mergeReflex(f *pflag.FlagSet, merged *config.Reflex, flags config.Reflex) {
	if f.Changed("mqtt-listen") {
		merged.MQTT.Listen = nonEmpty(flags.MQTT.Listen)
	}
	if f.Changed("mqtt-tls-listen") {
		merged.MQTT.TLSListen = nonEmpty(flags.MQTT.TLSListen)
	}
	if f.Changed("mqtt-tls-cert") {
		merged.MQTT.TLSCert = flags.MQTT.TLSCert
	}
	if f.Changed("mqtt-tls-key") {
		merged.MQTT.TLSKey = flags.MQTT.TLSKey
	}
	if f.Changed("mqtt-max-packet-size") {
		merged.MQTT.MaxPacketSize = flags.MQTT.MaxPacketSize
	}
	if f.Changed("mqtt-allow-anonymous") {
		merged.MQTT.AllowAnonymous = flags.MQTT.AllowAnonymous
	}
	if f.Changed("http-listen") {
		merged.HTTPListen = flags.HTTPListen
	}
	if f.Changed("metrics-addr") {
		merged.MetricsAddr = flags.MetricsAddr
	}
	if f.Changed("hub-id") {
		merged.HubID = flags.HubID
	}
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
