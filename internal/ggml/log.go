package ggml

/*
#include "capi.h"
void ft_log_sink(enum ggml_log_level level, const char * text, void * user_data);
*/
import "C"

import (
	"log/slog"
	"strings"
	"sync"
	"unsafe"
)

// C libraries log in fragments, through one process-wide callback; lines
// are assembled here, sent to the logger SetLogger gives at debug level
// (cmd/finetune shows them with -v; none is kept before it is set), and
// warnings and errors are kept so a failed C call can say why it failed.
var logState struct {
	sync.Mutex
	logger  *slog.Logger
	partial strings.Builder
	level   int
	recent  []string // warnings and errors since the last TakeMessages
}

func init() {
	logState.logger = slog.New(slog.DiscardHandler)
	C.ggml_log_set(C.ggml_log_callback(C.ft_log_sink), nil)
}

// SetLogger sends the C libraries' log lines to l (at debug level; warnings
// and errors at debug too, since finetune reports failures itself).
func SetLogger(l *slog.Logger) {
	logState.Lock()
	logState.logger = l
	logState.Unlock()
}

// LogCallback is the C log callback (a ggml_log_callback) that routes into
// this package; internal/llama hands it to llama_log_set.
func LogCallback() unsafe.Pointer { return unsafe.Pointer(C.ft_log_sink) }

//export ftLogSink
func ftLogSink(level C.int, text *C.char) {
	s := C.GoString(text)
	logState.Lock()
	defer logState.Unlock()
	if int(level) != C.GGML_LOG_LEVEL_CONT {
		logState.level = int(level)
	}
	logState.partial.WriteString(s)
	for {
		buf := logState.partial.String()
		i := strings.IndexByte(buf, '\n')
		if i < 0 {
			return
		}
		line := strings.TrimRight(buf[:i], "\r ")
		logState.partial.Reset()
		logState.partial.WriteString(buf[i+1:])
		if line == "" {
			continue
		}
		if logState.level >= C.GGML_LOG_LEVEL_WARN && logState.level != C.GGML_LOG_LEVEL_CONT {
			if len(logState.recent) == 64 {
				logState.recent = logState.recent[1:]
			}
			logState.recent = append(logState.recent, line)
		}
		if logState.logger != nil {
			logState.logger.Debug(line, "from", "ggml")
		}
	}
}

// TakeMessages returns the warnings and errors the C libraries logged since
// the last call, oldest first, and forgets them.
func TakeMessages() []string {
	logState.Lock()
	defer logState.Unlock()
	out := logState.recent
	logState.recent = nil
	return out
}
