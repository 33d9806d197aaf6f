package billing_test

import (
	"github.com/nats-io/nats.go"

	"github.com/ionusage/connector/pkg/events"
)

type nats2Msg struct {
	subject, typ, id string
	body             []byte
}

func (m nats2Msg) msg() *nats.Msg {
	n := nats.NewMsg(m.subject)
	n.Data = m.body
	n.Header.Set(events.HeaderType, m.typ)
	n.Header.Set("Nats-Msg-Id", m.id)
	return n
}
