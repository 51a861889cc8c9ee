package evals

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The judge prompts. The judge sees the conversation, the reference answer
// and the answer(s), and replies in a fixed form that parseScore and
// parseVerdict read.
const judgeSystem = "You are a strict, impartial grader of answers written by AI assistants. Judge only the content of the answers; ignore their length and style unless the rubric says otherwise."

func conversationText(c *Case) string {
	var b strings.Builder
	for _, m := range c.Prompt {
		fmt.Fprintf(&b, "[%s]\n%s\n", m.Role, m.Content)
	}
	if b.Len() == 0 {
		b.WriteString(c.RenderedPrompt)
	}
	return strings.TrimSpace(b.String())
}

// rubricPrompt asks for a 1-5 grade.
func rubricPrompt(rubric string, c *Case, answer string) Case {
	user := fmt.Sprintf(`Grade the answer below from 1 (worst) to 5 (best), following this rubric:
<rubric>
%s
</rubric>

<conversation>
%s
</conversation>

<reference_answer>
%s
</reference_answer>

<answer>
%s
</answer>

Reply with the grade on the first line as "Score: N" (N from 1 to 5), then one sentence saying why.`,
		strings.TrimSpace(rubric), conversationText(c), c.Reference, answer)
	return Case{Prompt: []Message{{Role: "system", Content: judgeSystem}, {Role: "user", Content: user}}, Source: c.Source}
}

// pairwisePrompt asks which of two answers is better.
func pairwisePrompt(c *Case, a, b string) Case {
	user := fmt.Sprintf(`Which of the two answers below answers the conversation better? The reference answer shows what a good answer contains.

<conversation>
%s
</conversation>

<reference_answer>
%s
</reference_answer>

<answer_A>
%s
</answer_A>

<answer_B>
%s
</answer_B>

Reply with the verdict on the first line as "Verdict: A", "Verdict: B" or "Verdict: TIE", then one sentence saying why.`,
		conversationText(c), c.Reference, a, b)
	return Case{Prompt: []Message{{Role: "system", Content: judgeSystem}, {Role: "user", Content: user}}, Source: c.Source}
}

var (
	scoreRe   = regexp.MustCompile(`(?i)\bscore\b\**\s*(?:of|is)?\s*[:=]?\s*\**\s*([1-5])(?:\s*/\s*5)?\b`)
	loneRe    = regexp.MustCompile(`^\s*\**\s*([1-5])\s*\**\s*(?:/\s*5)?\s*(?:$|[\n.:,)-])`)
	verdictRe = regexp.MustCompile(`(?i)\bverdict\b\s*[:=]?\s*\**\s*\[?\s*(A|B|TIE)\b`)
	leadRe    = regexp.MustCompile(`(?i)^\s*\**\s*(A|B|TIE)\b`)
)

// parseScore reads the grade from a judge's reply.
func parseScore(reply string) (float64, bool) {
	m := scoreRe.FindStringSubmatch(reply)
	if m == nil {
		m = loneRe.FindStringSubmatch(reply)
	}
	if m == nil {
		return 0, false
	}
	v, _ := strconv.Atoi(m[1])
	return float64(v), true
}

// parseVerdict reads "A", "B" or "TIE" from a judge's reply.
func parseVerdict(reply string) (string, bool) {
	m := verdictRe.FindStringSubmatch(reply)
	if m == nil {
		m = leadRe.FindStringSubmatch(reply)
	}
	if m == nil {
		return "", false
	}
	return strings.ToUpper(m[1]), true
}

// preference is what a verdict gives the contestant shown as contestantPos
// ("A" or "B"): 1 for a win, 0.5 for a tie, 0 for a loss.
func preference(verdict, contestantPos string) float64 {
	switch verdict {
	case "TIE":
		return 0.5
	case contestantPos:
		return 1
	}
	return 0
}
