#include "capi.h"
#include "_cgo_export.h"

// ft_log_sink has the exact signature of ggml_log_callback and forwards to
// the Go side; ggml and llama.cpp both log through it.
void ft_log_sink(enum ggml_log_level level, const char * text, void * user_data) {
    (void) user_data;
    ftLogSink((int) level, (char *) text);
}
