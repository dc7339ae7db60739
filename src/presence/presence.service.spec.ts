import { Logger } from '@nestjs/common';
import { loadConfig } from '../config/config';
import { Lifecycle } from '../health/lifecycle';
import { MetricsService } from '../metrics/metrics.service';
import { NodeIdInUseError, PresenceStore } from './presence.store';
import { PresenceService } from './presence.service';

describe('PresenceService at boot', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
  let service: PresenceService | undefined;

  beforeEach(() => jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined));
  afterEach(async () => {
    await service?.beforeApplicationShutdown();
    service = undefined;
    jest.restoreAllMocks();
  });

  /** A store whose acquireLease fails with each of `failures` in turn, then takes the lease. */
  const storeFailing = (...failures: Error[]) => {
    const acquireLease = jest.fn(async () => {
      const failure = failures.shift();
      if (failure) throw failure;
    });
    const store = { acquireLease, onReconnected: jest.fn(), removeSessions: jest.fn(async () => undefined), releaseLease: jest.fn(async () => undefined) };
    return { store: store as unknown as PresenceStore, acquireLease };
  };
  const boot = (store: PresenceStore) => (service = new PresenceService(config, store, new MetricsService(config), new Lifecycle())).onModuleInit();

  it('takes the node lease again when Redis went away between its ready and the lease', async () => {
    const { store, acquireLease } = storeFailing(new Error('Reached the max retries per request limit (which is 3)'), new Error('Connection is closed.'));
    await boot(store);
    expect(acquireLease).toHaveBeenCalledTimes(3);
  });

  it('refuses at once a NODE_ID that another live node holds', async () => {
    const { store, acquireLease } = storeFailing(new NodeIdInUseError('n1'));
    await expect(boot(store)).rejects.toBeInstanceOf(NodeIdInUseError);
    expect(acquireLease).toHaveBeenCalledTimes(1);
  });
});
