#include "cli/cli.h"

int main(int argc, char** argv) {
  return kforge::run_cli(argc, argv);
}
