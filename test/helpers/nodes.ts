import type { AddressInfo } from 'node:net';
import { NestExpressApplication } from '@nestjs/platform-express';
import { createSwitchboard } from '../../src/app.factory';
import { AppConfig } from '../../src/config/config';
import { Env, clusterEnv, configOf } from './env';

/** One Switchboard node inside the Jest process, listening on an ephemeral port. */
export interface TestNode {
  readonly app: NestExpressApplication;
  readonly config: AppConfig;
  readonly url: string;
  readonly nodeId: string;
  close(): Promise<void>;
}

export async function startNode(env: Env): Promise<TestNode> {
  const config = configOf(env);
  const app = await createSwitchboard(config);
  try {
    await app.listen(0, '127.0.0.1');
  } catch (err) {
    // A start-up hook refused (the NODE_ID held by a live node, say): the app was built, its broker connections
    // are open, and no shutdown hook runs unless it is closed.
    await app.close().catch(() => undefined);
    throw err;
  }
  const { port } = app.getHttpServer().address() as AddressInfo;
  let closed = false;
  return {
    app,
    config,
    url: `http://127.0.0.1:${port}`,
    nodeId: config.nodeId,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
    },
  };
}

/** `count` nodes of one cluster, named `<cluster>-n1`, `-n2`, ... */
export async function startCluster(cluster: string, count: number, extra: Env = {}): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let i = 1; i <= count; i++) nodes.push(await startNode(clusterEnv(cluster, `${cluster}-n${i}`, extra)));
  return nodes;
}

export async function closeAll(nodes: readonly TestNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.close()));
}
