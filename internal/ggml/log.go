package ggml

/*
#include "capi.h"
void ft_log_sink(enum ggml_log_level level, const char * text, void * user_data);
*/
import "C"

import (
	"strings"
	"sync"
	"unsafe"

	"github.com/charmbracelet/log"
)

// C libraries log in fragments; lines are assembled here, sent to the Go
// logger at debug level (shown with --verbose), and warnings and errors are
// kept so a failed C call can say why it failed.
var logState struct {
	sync.Mutex
	logger  *log.Logger
	partial strings.Builder
	level   int
	recent  []string // warnings and errors since the last TakeMessages
}

func init() {
	logState.logger = log.Default()
	C.ggml_log_set(C.ggml_log_callback(C.ft_log_sink), nil)
}

// SetLogger sends the C libraries' log lines to l (at debug level; warnings
// and errors at debug too, since finetune reports failures itself).
func SetLogger(l *log.Logger) {
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
