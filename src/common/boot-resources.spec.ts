import { BootResources } from './boot-resources';

describe('BootResources', () => {
  it('closes what was opened when the build fails, a failing close included', async () => {
    const boot = new BootResources();
    const closed: string[] = [];
    boot.opened(() => closed.push('redis'));
    boot.opened(() => Promise.reject(new Error('already gone')));
    boot.opened(async () => void closed.push('amqp'));
    await boot.closeAll();
    expect(closed).toEqual(['redis', 'amqp']);
  });

  it('closes at once what a provider still connecting opens after the build failed', async () => {
    const boot = new BootResources();
    await boot.closeAll();
    const late = new Promise<void>((resolve) => boot.opened(resolve));
    await expect(late).resolves.toBeUndefined();
  });

  it('forgets what was opened once the build succeeded (the shutdown hooks close it then)', async () => {
    const boot = new BootResources();
    const close = jest.fn();
    boot.opened(close);
    boot.forget();
    await boot.closeAll();
    expect(close).not.toHaveBeenCalled();
  });
});
