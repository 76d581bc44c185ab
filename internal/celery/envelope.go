package celery

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// envelope is the JSON object Kombu puts on a Redis list or publishes on a
// fanout channel: the payload is base64 in Body (body_encoding "base64", the
// virtual transport's default).
type envelope struct {
	Body            string          `json:"body"`
	ContentEncoding string          `json:"content-encoding"`
	ContentType     string          `json:"content-type"`
	Headers         json.RawMessage `json:"headers"`
	Properties      properties      `json:"properties"`
}

type properties struct {
	CorrelationID string       `json:"correlation_id,omitempty"`
	ReplyTo       string       `json:"reply_to,omitempty"`
	DeliveryMode  int          `json:"delivery_mode"`
	DeliveryInfo  deliveryInfo `json:"delivery_info"`
	Priority      int          `json:"priority"`
	BodyEncoding  string       `json:"body_encoding"`
	DeliveryTag   string       `json:"delivery_tag"`
}

type deliveryInfo struct {
	Exchange   string `json:"exchange"`
	RoutingKey string `json:"routing_key"`
}

// taskHeaders are the protocol v2 headers ebb reads from a task message.
type taskHeaders struct {
	Task       string `json:"task"`
	ID         string `json:"id"`
	ArgsRepr   string `json:"argsrepr"`
	KwargsRepr string `json:"kwargsrepr"`
	Retries    int    `json:"retries"`
}

// payload decodes the envelope's body.
func (e *envelope) payload() ([]byte, error) {
	if e.Properties.BodyEncoding != "" && e.Properties.BodyEncoding != "base64" {
		return nil, fmt.Errorf("celery: body encoding %q is not supported (Kombu's Redis transport uses base64)", e.Properties.BodyEncoding)
	}
	return base64.StdEncoding.DecodeString(e.Body)
}

// newEnvelope wraps a JSON body the way Kombu does for a fanout message
// (events, remote control): delivery_mode 1, base64 body, a fresh tag.
func newEnvelope(body any, headers any, exchange, routingKey string) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	h, err := json.Marshal(headers)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{
		Body: base64.StdEncoding.EncodeToString(b), ContentEncoding: "utf-8", ContentType: "application/json",
		Headers: h,
		Properties: properties{
			DeliveryMode: 1, DeliveryInfo: deliveryInfo{Exchange: exchange, RoutingKey: routingKey},
			BodyEncoding: "base64", DeliveryTag: uuid4(),
		},
	})
}

// uuid4 is a random RFC 4122 UUID, as Kombu uses for delivery tags and
// Celery for tickets and reply ids.
func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
