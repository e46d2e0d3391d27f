import type { QueryClient, QueryKey } from "@tanstack/react-query";

/**
 * Load these queries again after the server said something changed. A read already in flight
 * may have been answered before the change, and TanStack Query hands it back instead of asking
 * again while the query holds no data yet (its first load): so cancel what is in flight first.
 */
export async function reload(queries: QueryClient, queryKey?: QueryKey): Promise<void> {
  await queries.cancelQueries({ queryKey });
  await queries.invalidateQueries({ queryKey });
}
