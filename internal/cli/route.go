package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/flickapi"
	"github.com/flick-edge/flick/internal/forward"
	"github.com/flick-edge/flick/internal/route"
	"github.com/spf13/cobra"
)

func (a *app) routeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Forward local topics upstream (MQTT, NATS) through a durable outbox",
		Long: `A route forwards messages published on the hub's broker (by devices, or
function results) to an upstream MQTT broker or NATS server. Each message a
route matches is written to the route's outbox on disk (fsynced, group
commit) before the device's QoS 1/2 publish is acknowledged, sent in order,
and deleted only when the upstream acknowledges it: nothing is lost to an
outage, a daemon restart or a power cut. Every message carries a stable id
(MQTT 5 user property flick-msg-id, NATS Nats-Msg-Id) so upstream can drop
the duplicates at-least-once delivery implies. Messages the upstream refuses
(not authorized, too large) go to flick/dead-letter/ROUTE on the hub.

A route can also run the other way: with --from an upstream URL (mqtt:// or
mqtts://, then the topic filter) and --to a local topic template, the hub
subscribes upstream with a persistent session (the broker keeps what is sent
while the hub is away, for 24h) and delivers each message on its own broker
and to the functions bound to that topic; it is acknowledged upstream once
they are done. This is how fleet commands reach functions.`,
		Example: `  flick route add cloud --from 'home/+/chime' --to 'mqtts://broker.example:8883/fleet/{hub}/{topic}' \
      --ca-file ca.pem --cert-file hub.pem --key-file hub.key
  flick route add telemetry --from 'sensors/#' --to 'nats://nats.lan:4222/fleet.{hub}' --ttl 24h --max-size 256MiB
  flick route add commands --from 'mqtt://broker.example:1883/fleet/{hub}/cmd/#' --to 'cmd/{topic}'
  flick route ls`,
	}
	cmd.AddCommand(a.routeAddCmd(), a.routeListCmd(), a.routeRemoveCmd(), a.routeInspectCmd())
	return cmd
}

func (a *app) routeAddCmd() *cobra.Command {
	var sp route.Spec
	var maxSize string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "add NAME --from FILTER --to URL [OPTIONS]",
		Short: "Add (or replace) a route",
		Long: `Add a route. --to is mqtt://host:port/template, mqtts:// (TLS), nats://host:port/template
or nats+tls://. In the template {hub} is this hub's id (flick daemon --hub-id) and
{topic} the local topic; a template without {topic} is a prefix; no path keeps
the local topic ('/' becomes '.' for NATS). Adding a route to an upstream that
is down is fine: messages wait in the outbox.

Inbound (subscribe upstream, MQTT 5): --from mqtt://host:port/FILTER or
mqtts://, where FILTER may use + and # and {hub}; --to is the local topic:
{topic} there is the upstream topic after the filter's fixed levels, a
template without {topic} is a prefix, and no --to keeps the upstream topic.
--username, --password and the TLS flags apply to the subscription.`,
		Args: exactArgs(1, "a route name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sp.Name = args[0]
			if maxSize != "" {
				n, err := units.RAMInBytes(maxSize)
				if err != nil {
					return usageError{fmt.Errorf("--max-size %q: %v", maxSize, err)}
				}
				sp.MaxBytes = n
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var out route.Spec
			if err := c.JSON(cmd.Context(), http.MethodPost, flickapi.Prefix+"/routes", nil, sp, &out); err != nil {
				return err
			}
			if jsonOut {
				out.Password = ""
				return printJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "route %s: %s -> %s\n", out.Name, strings.Join(out.From, ","), out.To)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sp.From, "from", nil, "local topic filter (repeatable); or an upstream URL with a filter to subscribe to")
	f.StringVar(&sp.To, "to", "", "destination URL; or, subscribing upstream, the local topic template")
	f.Uint8Var(&sp.QoS, "qos", 1, "MQTT QoS upstream: 1 or 2")
	f.DurationVar(&sp.TTL, "ttl", 0, "drop messages not sent within this long (0: keep until sent)")
	f.Uint8Var(&sp.Priority, "priority", 0, "0-9: higher-priority messages are sent first")
	f.IntVar(&sp.Batch, "batch", 100, "messages per upstream round trip")
	f.DurationVar(&sp.Linger, "linger", 0, "wait up to this long to fill a batch")
	f.StringVar(&maxSize, "max-size", "64MiB", "disk quota of the route's outbox")
	f.StringVar(&sp.WhenFull, "when-full", route.WhenFullDropOldest, "outbox full: drop-oldest, or refuse (devices get MQTT 5 reason 0x97)")
	f.StringVar(&sp.Username, "username", "", "upstream user (MQTT, NATS)")
	f.StringVar(&sp.Password, "password", "", "upstream password")
	f.StringVar(&sp.CAFile, "ca-file", "", "PEM CA for the upstream's certificate")
	f.StringVar(&sp.CertFile, "cert-file", "", "PEM client certificate")
	f.StringVar(&sp.KeyFile, "key-file", "", "PEM client key")
	f.StringVar(&sp.Creds, "creds-file", "", "NATS .creds file")
	f.BoolVar(&jsonOut, "json", false, "print the route as JSON")
	return cmd
}

func (a *app) routeListCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use: "ls", Short: "List routes with their connection state and outbox",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var list []forward.Status
			if err := c.JSON(cmd.Context(), http.MethodGet, flickapi.Prefix+"/routes", nil, nil, &list); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, list)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFROM\tTO\tSTATE\tQUEUED\tOLDEST\tSENT\tFAILED\tDROPPED\tEXPIRED")
			for _, s := range list {
				state := "connected"
				if !s.Connected {
					state = "waiting"
				}
				oldest := "-"
				if s.Queued > 0 {
					oldest = s.OldestAge.Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d (%s)\t%s\t%d\t%d\t%d\t%d\n", s.Name, strings.Join(s.From, ","), s.To, state,
					s.Queued, units.BytesSize(float64(s.QueuedBytes)), oldest, s.Sent, s.Failed, s.Dropped, s.Expired)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func (a *app) routeRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use: "rm NAME...", Short: "Remove routes (their unsent messages are kept on disk until a route of the same name returns)",
		Args: minArgs(1, "a route name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := c.JSON(cmd.Context(), http.MethodDelete, flickapi.Prefix+"/routes/"+url.PathEscape(n), nil, nil, nil); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, n)
			}
			return nil
		},
	}
}

func (a *app) routeInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use: "inspect NAME", Short: "Show a route as JSON",
		Args: exactArgs(1, "a route name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var st forward.Status
			if err := c.JSON(cmd.Context(), http.MethodGet, flickapi.Prefix+"/routes/"+url.PathEscape(args[0]), nil, nil, &st); err != nil {
				return err
			}
			return printJSON(a.stdout, st)
		},
	}
}
