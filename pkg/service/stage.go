package service

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ionusage/connector/pkg/bus"
)

// Stage is one pipeline stage's router with the shared middleware stack (pkg/bus) and a
// publisher for what the stage emits and for its dead letters.
type Stage struct {
	Name      string
	Router    *message.Router
	Publisher *bus.Publisher
	deps      Deps
}

// NewStage builds the router of a stage. Handlers are added with Consume.
func NewStage(deps Deps, name string) (*Stage, error) { return NewStageWith(deps, name, nil) }

// NewStageWith is NewStage with the router options adjusted by tune before they are validated
// (a stage whose handler waits on purpose, such as the reconciler, needs a longer
// HandlerTimeout and no in-process retries). The retry budget must still fit in AckWait.
func NewStageWith(deps Deps, name string, tune func(*bus.RouterOptions)) (*Stage, error) {
	if err := deps.Validate(); err != nil {
		return nil, err
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: deps.JS, Logger: deps.Logger})
	if err != nil {
		return nil, fmt.Errorf("%s publisher: %w", name, err)
	}
	opts := bus.RouterOptions{
		Stage:     name,
		Logger:    deps.Logger,
		Publisher: pub,
		Registry:  deps.Registry,
		AckWait:   bus.DefaultAckWait, // Validate proves the retry budget fits inside it
	}
	if tune != nil {
		tune(&opts)
	}
	r, err := bus.NewRouter(opts)
	if err != nil {
		return nil, fmt.Errorf("%s router: %w", name, err)
	}
	return &Stage{Name: name, Router: r, Publisher: pub, deps: deps}, nil
}

// Consume binds a handler to a provisioned durable consumer of a stream; filter is one of the
// consumer's filter subjects (the subscriber refuses any other).
func (s *Stage) Consume(stream, durable, filter string, h message.NoPublishHandlerFunc) error {
	return s.ConsumeGated(stream, durable, filter, nil, h)
}

// ConsumeGated is Consume with a gate each pull loop waits on before it takes a message
// (backpressure: bus.Backlog.Wait); nil means none.
func (s *Stage) ConsumeGated(stream, durable, filter string, gate func(context.Context) error, h message.NoPublishHandlerFunc) error {
	sub, err := bus.NewSubscriber(bus.SubscriberOptions{
		JS:       s.deps.JS,
		Stream:   stream,
		Logger:   s.deps.Logger,
		Consumer: func(string) string { return durable },
		Workers:  workers(s.deps.Config, durable),
		Gate:     gate,
	})
	if err != nil {
		return fmt.Errorf("%s subscriber: %w", s.Name, err)
	}
	s.Router.AddConsumerHandler(s.Name+"."+durable, filter, sub, h)
	return nil
}

// Run runs the router until ctx ends, then closes it gracefully: in-flight handlers finish or
// their messages stay un-acked for redelivery.
func (s *Stage) Run(ctx context.Context) error {
	if s.deps.Health != nil {
		s.deps.Health.AddCheck(s.Name+"-router", func(context.Context) error {
			select {
			case <-s.Router.Running():
				return nil
			default:
				return fmt.Errorf("%s router not running yet", s.Name)
			}
		})
	}
	// Router.Run closes the router when ctx ends and waits (CloseTimeout) for running handlers.
	return s.Router.Run(ctx)
}
