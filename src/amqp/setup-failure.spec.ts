import { telling } from './amqp-node-bus';

describe("telling: the boot's account of a channel setup RabbitMQ refused", () => {
  const refusal = 'Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg \'x-message-ttl\'"';
  const ended = 'Channel ended, no reply will be forthcoming';

  it("keeps the broker's refusal over the channel's end that follows it (on the same connection, another channel's pending call)", () => {
    expect(telling(telling(undefined, refusal), ended)).toBe(refusal);
  });

  it('takes the channel end when nothing else was said, and a later refusal over it', () => {
    expect(telling(undefined, ended)).toBe(ended);
    expect(telling(ended, refusal)).toBe(refusal);
  });
});
