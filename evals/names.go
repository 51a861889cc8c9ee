package evals

import "fmt"

// checkName accepts contestant and metric names that gates and reports can
// refer to: letters, digits, '_' and '-', starting with a letter.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("a contestant needs a name")
	}
	for i, r := range name {
		ok := r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok || (i == 0 && !((r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))) {
			return fmt.Errorf("name %q: use letters, digits, '_' and '-', starting with a letter", name)
		}
	}
	return nil
}
