/**
 * What the async providers opened (broker connections) while Nest built the app. When one provider's factory
 * throws, Nest calls no shutdown hook, so the connections the others had already opened stayed open: a
 * process that then exits does not mind, but one that goes on (a test, an app embedding Switchboard) was held
 * by them. createSwitchboard closes them when the build fails, and forgets them when it succeeds (the
 * modules' own shutdown hooks close them from then on). Nest builds the modules side by side, so a provider
 * may still be connecting when another's failure ends the build: what it opens after that is closed at once.
 */
export class BootResources {
  private readonly closers: Array<() => unknown> = [];
  private failed = false;

  /** `close` is called if the build fails; it may return a promise, and its failure is ignored. */
  opened(close: () => unknown): void {
    if (this.failed) void Promise.resolve().then(close).catch(() => undefined);
    else this.closers.push(close);
  }

  async closeAll(): Promise<void> {
    this.failed = true;
    const closers = this.closers.splice(0);
    await Promise.allSettled(closers.map(async (close) => close()));
  }

  forget(): void {
    this.closers.length = 0;
  }
}
