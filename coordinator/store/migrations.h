// The database schema as numbered migrations, embedded from schema/sql at build time.
#pragma once

#include <vector>

namespace kforge {

struct Migration {
  int version;       // NNNN from the file name; applied in increasing order
  const char* name;  // the file name, for messages
  const char* sql;   // statements run in one transaction
};

// All migrations, sorted by version. Versions are 1, 2, ... without gaps.
const std::vector<Migration>& migrations();

}  // namespace kforge
