package events

import "time"

// DeadLetter is what any stage publishes on dlq.v1.<stage>.<account> when it gives up on a
// message or a part of one (a bad line, an out-of-period row). Nothing is lost: the original
// bytes and headers travel with the reason, so `dlq redrive` can feed them back.
type DeadLetter struct {
	Stage           string            `json:"stage"`            // fetcher, transformer, publisher, ...
	Account         string            `json:"account"`          // "unknown" when the message named none
	Reason          string            `json:"reason"`           // stable code: undecodable, handler-failed, out-of-period, bad-line, ...
	Error           string            `json:"error"`            // human text, secrets never included
	OriginalSubject string            `json:"original_subject"` // where the message was consumed from
	OriginalID      string            `json:"original_id"`      // its ce-id / Nats-Msg-Id, when it had one
	OriginalStream  string            `json:"original_stream,omitempty"`
	OriginalSeq     uint64            `json:"original_seq,omitempty"`
	Attempts        int               `json:"attempts"`          // deliveries before giving up
	Headers         map[string]string `json:"headers,omitempty"` // original headers
	Payload         []byte            `json:"payload"`           // original body (base64 in JSON)
	Line            int               `json:"line,omitempty"`    // 1-based line within the payload, for line-level dead letters
	FailedAt        time.Time         `json:"failed_at"`
}

// NATSSubject is the subject the dead letter is published on.
func (d DeadLetter) NATSSubject() string { return DeadLetterSubject(d.Stage, d.Account) }
