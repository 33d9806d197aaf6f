package bus_test

import (
	"context"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
)

const conformanceStream = "CONFORMANCE"

// TestIntegrationPubSubConformance runs watermill's universal Pub/Sub suite against Publisher
// and Subscriber configured as in production: a pre-provisioned stream, durables built by
// ConsumerSpec.ConsumerConfig (explicit ack, AckWait 30s, MaxDeliver 10), default NAK delays.
// The suite subscribes to topics nobody provisioned, so the test's Consumer resolver
// provisions the durable first: that stands in for start-up provisioning.
func TestIntegrationPubSubConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: watermill conformance suite")
	}
	js := bustest.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       conformanceStream,
		Subjects:   []string{"conformance.>"},
		Storage:    jetstream.FileStorage,
		Duplicates: bus.DefaultDuplicateWindow,
	}); err != nil {
		t.Fatal(err)
	}

	// durable provisions the durable of (group, topic) and returns its name.
	durable := func(t *testing.T, group, topic string) string {
		name := strings.NewReplacer(".", "_", "*", "_", ">", "_").Replace(topic)
		if group != "" {
			name = group + "_" + name
		}
		spec := bus.ConsumerSpec{
			Stream: conformanceStream, Durable: name, FilterSubjects: []string{topic},
			Workers: 1, AckWait: bus.DefaultAckWait, MaxDeliver: bus.DefaultMaxDeliver,
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := js.CreateOrUpdateConsumer(pctx, conformanceStream, spec.ConsumerConfig()); err != nil {
			t.Errorf("provision %s: %v", name, err)
		}
		return name
	}
	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := bus.NewSubscriber(bus.SubscriberOptions{
			JS:       js,
			Stream:   conformanceStream,
			Consumer: func(topic string) string { return durable(t, group, topic) },
		})
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}

	features := tests.Features{
		// Subscribers of one durable share its messages; two durables each get all of them.
		ConsumerGroups: true,
		// At-least-once: a message in flight at Close or after AckWait is redelivered.
		ExactlyOnceDelivery: false,
		// Redeliveries after NAK (delayed) overtake later messages.
		GuaranteedOrder: false,
		Persistent:      true,
		// A new subscriber on an existing durable resumes it; only a new durable replays.
		NewSubscriberReceivesOldMessages: false,
		// The delayed NAK (1s, 2s, 4s…, pitfall 6) is deliberate: the full-size
		// TestContinueAfterErrors (300 NAKs of 50 messages, 15s per read) cannot finish under
		// it; the short variants still cover every behaviour.
		ForceShort: true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return "conformance." + string(tctx.TestID)
		},
	}
	single := func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, "") }

	// This is tests.TestPubSub's list, run the same way, minus TestConcurrentSubscribeMultipleTopics:
	// it publishes the SAME message ids to 10 subjects of one stream and expects each subject
	// to get all of them. Our Nats-Msg-Id is the event id (DESIGN.md "Identity") and the
	// stream's duplicate window is stream-wide, so the 2nd..10th copies are dropped by design;
	// TestDuplicateIDStoredOnce pins that behaviour. There is no Features flag for it.
	suite := []struct {
		fn       func(*testing.T, tests.TestContext, tests.PubSubConstructor)
		parallel bool
	}{
		{tests.TestPublishSubscribe, true},
		{tests.TestConcurrentSubscribe, true},
		{tests.TestResendOnError, true},
		{tests.TestNoAck, true},
		{tests.TestContinueAfterSubscribeClose, true},
		{tests.TestConcurrentClose, true},
		{tests.TestContinueAfterErrors, true},
		{tests.TestPublishSubscribeInOrder, true},
		{tests.TestPublisherClose, true},
		{tests.TestTopic, true},
		{tests.TestMessageCtx, true},
		{tests.TestSubscribeCtx, true},
		{tests.TestNewSubscriberReceivesOldMessages, true},
		{tests.TestReconnect, false},
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("conformance suite took %s", time.Since(start)) })
	run := func(name string, parallel bool, fn func(*testing.T, tests.TestContext)) {
		t.Run(name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			tctx := tests.TestContext{TestID: tests.NewTestID(), Features: features}
			t.Run(string(tctx.TestID), func(t *testing.T) { fn(t, tctx) })
		})
	}
	for _, tc := range suite {
		run(funcName(tc.fn), tc.parallel, func(t *testing.T, tctx tests.TestContext) { tc.fn(t, tctx, single) })
	}
	run("TestConsumerGroups", true, func(t *testing.T, tctx tests.TestContext) {
		tests.TestConsumerGroups(t, tctx, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newPubSub(t, group)
		})
	})
}

func funcName(f any) string {
	name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	return name[strings.LastIndex(name, ".")+1:]
}
