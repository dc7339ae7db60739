import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { USER_ID_PATTERN } from '../common/patterns';

/** The answers of the presence routes, for the OpenAPI document; the controller builds them from the store. */

export class SessionRefDto {
  @ApiProperty({ description: 'The node holding the session', example: 'node-1' })
  nodeId!: string;

  @ApiProperty({ description: "The session's id (its Socket.IO socket id)" })
  sessionId!: string;
}

export class UserPresenceDto {
  @ApiProperty({ example: 'bob', pattern: USER_ID_PATTERN.source })
  userId!: string;

  @ApiProperty({ description: 'Whether the user has a live session on any node' })
  online!: boolean;

  @ApiProperty({
    type: Number,
    nullable: true,
    description: "Epoch ms when the user's last session ended; null when online since, or never seen",
    example: 1764950000000,
  })
  lastSeen!: number | null;

  @ApiPropertyOptional({ type: [SessionRefDto], description: 'With an X-API-Key only: where the live sessions are' })
  sessions?: readonly SessionRefDto[];
}

export class NodeSessionsDto {
  @ApiProperty({ example: 'node-1' })
  nodeId!: string;

  @ApiProperty({ description: 'Live sessions on that node' })
  sessions!: number;
}

export class ClusterPresenceDto {
  @ApiProperty({ description: 'Users with at least one live session' })
  online!: number;

  @ApiProperty({ description: 'Live sessions in all' })
  sessions!: number;

  @ApiProperty({ type: [NodeSessionsDto] })
  nodes!: readonly NodeSessionsDto[];
}
