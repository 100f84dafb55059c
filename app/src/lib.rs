//! oponn: a GraphQL service over MongoDB with a Redis cache in front of every call.
