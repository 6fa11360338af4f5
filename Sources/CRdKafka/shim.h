#ifndef PROGRESS_BRIDGE_CRDKAFKA_SHIM_H
#define PROGRESS_BRIDGE_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#endif
