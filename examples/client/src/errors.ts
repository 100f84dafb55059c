// oponn puts a machine-readable code in every error's `extensions.code` (README, "API"); a
// client branches on it, never on the message.
import { CombinedGraphQLErrors } from '@apollo/client/errors';

/** The code of the first GraphQL error a failed operation carried, if it carried any. */
export function errorCode(error: unknown): string | undefined {
  if (!CombinedGraphQLErrors.is(error)) return undefined;
  const code = error.errors[0]?.extensions?.['code'];
  return typeof code === 'string' ? code : undefined;
}
