// Drops the database a client-test run seeded: `node --import tsx test/drop-database.ts`, with
// MONGODB_URI and MONGODB_DATABASE set. scripts/client-test runs it once the server has stopped.
import { MongoClient } from 'mongodb';

const uri = process.env['MONGODB_URI'];
const database = process.env['MONGODB_DATABASE'];
// Only a run's own database: a name that does not say so is refused, not dropped.
if (!uri || !database?.startsWith('oponn_client_')) {
  throw new Error('MONGODB_URI and MONGODB_DATABASE (oponn_client_...) must be set');
}
const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
try {
  await client.db(database).dropDatabase();
} finally {
  await client.close();
}
