// Package mqtttest is a small MQTT 5 client for tests and the benchmark
// load generator, on eclipse/paho.golang: connect, publish and wait for the
// acknowledgement, subscribe into a channel.
package mqtttest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Client is a connected MQTT 5 client.
type Client struct {
	c        *paho.Client
	Messages chan *paho.Publish
	Dropped  atomic.Uint64 // messages lost because Messages was full
}

// Options for Connect.
type Options struct {
	ClientID string
	Username string
	Password string
	Buffer   int // Messages capacity (default 1024)
	// Persistent asks the broker to keep the session (subscriptions and
	// queued QoS 1/2 messages) for an hour across disconnects.
	Persistent bool
	// OnDisconnect is called when the connection is lost.
	OnDisconnect func()
}

var seq atomic.Uint64

// Connect dials addr and performs the MQTT 5 handshake.
func Connect(ctx context.Context, addr string, o Options) (*Client, error) {
	if o.ClientID == "" {
		o.ClientID = fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e6, seq.Add(1))
	}
	if o.Buffer == 0 {
		o.Buffer = 1024
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cl := &Client{Messages: make(chan *paho.Publish, o.Buffer)}
	var once sync.Once
	lost := func() {
		if o.OnDisconnect != nil {
			once.Do(o.OnDisconnect)
		}
	}
	cl.c = paho.NewClient(paho.ClientConfig{
		ClientID:           o.ClientID,
		Conn:               conn,
		OnClientError:      func(error) { lost() },
		OnServerDisconnect: func(*paho.Disconnect) { lost() },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case cl.Messages <- pr.Packet:
			default:
				cl.Dropped.Add(1)
			}
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: o.ClientID, CleanStart: !o.Persistent, KeepAlive: 30}
	if o.Persistent {
		expiry := uint32(3600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	if o.Username != "" {
		cp.Username, cp.UsernameFlag = o.Username, true
		cp.Password, cp.PasswordFlag = []byte(o.Password), true
	}
	ack, err := cl.c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		if ack != nil {
			return nil, fmt.Errorf("connect refused: reason 0x%02x %s: %w", ack.ReasonCode, ack.Properties.ReasonString, err)
		}
		return nil, err
	}
	return cl, nil
}

// Publish sends one message; with QoS 1/2 it returns once acknowledged,
// and the reason code the broker answered (0 is success).
func (c *Client) Publish(ctx context.Context, p *paho.Publish) (byte, error) {
	r, err := c.c.Publish(ctx, p)
	if r != nil {
		return r.ReasonCode, err
	}
	return 0, err
}

// Subscribe subscribes to filters at the given QoS.
func (c *Client) Subscribe(ctx context.Context, qos byte, filters ...string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	ack, err := c.c.Subscribe(ctx, s)
	if err != nil {
		return err
	}
	for i, r := range ack.Reasons {
		if r >= 0x80 {
			return fmt.Errorf("subscribe %s refused: reason 0x%02x", filters[i], r)
		}
	}
	return nil
}

// Next waits for the next message.
func (c *Client) Next(ctx context.Context) (*paho.Publish, error) {
	select {
	case m := <-c.Messages:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close disconnects.
func (c *Client) Close() error { return c.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }
