<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="zh_CN" sourcelanguage="en">
    <context>
        <name>App</name>
        <message>
            <source>O.Bubble is already running with the data folder %1.</source>
            <translation>O.Bubble 已在使用数据文件夹 %1 运行。</translation>
        </message>
        <message>
            <source>O.Bubble could not start: %1</source>
            <translation>O.Bubble 无法启动：%1</translation>
        </message>
    </context>
    <context>
        <name>ChatPane</name>
        <message>
            <source>New chat</source>
            <translation>新对话</translation>
        </message>
        <message>
            <source>Knowledge bases this chat answers from</source>
            <translation>本对话回答时参考的知识库</translation>
        </message>
        <message>
            <source>Web search</source>
            <translation>联网搜索</translation>
        </message>
        <message>
            <source>Search the web for each question. When on, your question leaves this computer.</source>
            <translation>每个问题都联网搜索。开启后，你的问题会离开本机。</translation>
        </message>
        <message>
            <source>● Online</source>
            <translation>● 联网中</translation>
        </message>
        <message>
            <source>Web search is on: questions in this chat are sent to DuckDuckGo.</source>
            <translation>联网搜索已开启：本对话中的问题会发送给 DuckDuckGo。</translation>
        </message>
        <message>
            <source>Ask anything. Answers are written on this computer.</source>
            <translation>尽管问吧。回答完全在本机生成。</translation>
        </message>
        <message>
            <source>Editing an earlier question: Enter sends it again, Esc cancels.</source>
            <translation>正在修改之前的问题：按 Enter 重新发送，按 Esc 取消。</translation>
        </message>
        <message>
            <source>Ask a question… (Enter to send, Shift+Enter for a new line)</source>
            <translation>输入问题…（Enter 发送，Shift+Enter 换行）</translation>
        </message>
        <message>
            <source>Send</source>
            <translation>发送</translation>
        </message>
        <message>
            <source>Stop</source>
            <translation>停止</translation>
        </message>
        <message>
            <source>Stop the answer (Esc)</source>
            <translation>停止回答（Esc）</translation>
        </message>
        <message>
            <source>No knowledge bases yet: create one on the Knowledge tab</source>
            <translation>还没有知识库：请在“知识库”页面创建</translation>
        </message>
        <message>
            <source>Knowledge: none</source>
            <translation>知识库：无</translation>
        </message>
        <message>
            <source>Knowledge: %1</source>
            <translation>知识库：%1</translation>
        </message>
        <message numerus="yes">
            <source>Knowledge: %n bases</source>
            <translation>
                <numerusform>知识库：%n 个</numerusform>
            </translation>
        </message>
    </context>
    <context>
        <name>ChatView</name>
        <message>
            <source>Copy</source>
            <translation>复制</translation>
        </message>
    </context>
    <context>
        <name>ConversationsSidebar</name>
        <message>
            <source>New chat</source>
            <translation>新对话</translation>
        </message>
        <message>
            <source>Start a new conversation (Ctrl+N)</source>
            <translation>开始新对话（Ctrl+N）</translation>
        </message>
        <message>
            <source>Search conversations</source>
            <translation>搜索对话</translation>
        </message>
        <message>
            <source>Rename</source>
            <translation>重命名</translation>
        </message>
        <message>
            <source>Delete</source>
            <translation>删除</translation>
        </message>
        <message>
            <source>Untitled</source>
            <translation>未命名</translation>
        </message>
        <message>
            <source>Rename…</source>
            <translation>重命名…</translation>
        </message>
        <message>
            <source>Rename conversation</source>
            <translation>重命名对话</translation>
        </message>
        <message>
            <source>Title:</source>
            <translation>标题：</translation>
        </message>
        <message>
            <source>Delete conversation</source>
            <translation>删除对话</translation>
        </message>
        <message>
            <source>Delete this conversation and all its messages? This cannot be undone.</source>
            <translation>要删除此对话及其所有消息吗？此操作无法撤销。</translation>
        </message>
    </context>
    <context>
        <name>CrashDialog</name>
        <message>
            <source>Something went wrong</source>
            <translation>出错了</translation>
        </message>
        <message>
            <source>The details were also written to %1.</source>
            <translation>详细信息也已写入 %1。</translation>
        </message>
        <message>
            <source>Bubble hit an unexpected error and carries on. If something no longer works, restart the app. You can copy the details below into a bug report.</source>
            <translation>Bubble 遇到了意外错误，但仍在继续运行。如果有功能不再正常，请重新启动应用。你可以复制下面的详细信息用于问题报告。</translation>
        </message>
        <message>
            <source>Copy details</source>
            <translation>复制详细信息</translation>
        </message>
    </context>
    <context>
        <name>DocumentTableModel</name>
        <message>
            <source>Name</source>
            <translation>名称</translation>
        </message>
        <message>
            <source>Type</source>
            <translation>类型</translation>
        </message>
        <message>
            <source>Chunks</source>
            <translation>片段数</translation>
        </message>
        <message>
            <source>Size</source>
            <translation>大小</translation>
        </message>
        <message>
            <source>Added</source>
            <translation>添加时间</translation>
        </message>
        <message>
            <source>Status</source>
            <translation>状态</translation>
        </message>
        <message>
            <source>Indexed</source>
            <translation>已索引</translation>
        </message>
        <message>
            <source>Pending</source>
            <translation>等待中</translation>
        </message>
        <message>
            <source>Failed</source>
            <translation>失败</translation>
        </message>
        <message>
            <source>Text</source>
            <translation>文本</translation>
        </message>
        <message>
            <source>Word</source>
            <translation>Word</translation>
        </message>
        <message>
            <source>Q&amp;A</source>
            <translation>问答</translation>
        </message>
    </context>
    <context>
        <name>FirstRunPanel</name>
        <message>
            <source>Welcome to O.Bubble</source>
            <translation>欢迎使用 O.Bubble</translation>
        </message>
        <message>
            <source>Bubble answers with a chat model that runs on this computer. Choose a model folder (config.json + weights, e.g. downloaded from Hugging Face) or open a GGUF file. Your knowledge bases on the Knowledge tab work without a model.</source>
            <translation>Bubble 使用在本机运行的对话模型来回答问题。请选择一个模型文件夹（包含 config.json 和权重文件，例如从 Hugging Face 下载的模型），或打开一个 GGUF 文件。没有模型时，“知识库”页面也可以正常使用。</translation>
        </message>
        <message>
            <source>Download the recommended model</source>
            <translation>下载推荐的模型</translation>
        </message>
        <message>
            <source>All models…</source>
            <translation>全部模型…</translation>
        </message>
        <message>
            <source>Choose model folder…</source>
            <translation>选择模型文件夹…</translation>
        </message>
        <message>
            <source>Open GGUF file…</source>
            <translation>打开 GGUF 文件…</translation>
        </message>
        <message>
            <source>Runs the file as it is, quantized, through llama.cpp: fast on a plain CPU.</source>
            <translation>通过 llama.cpp 直接运行该量化文件，无需转换：普通 CPU 上也很快。</translation>
        </message>
        <message>
            <source>Use a model server…</source>
            <translation>使用模型服务器…</translation>
        </message>
        <message>
            <source>Point Bubble at an OpenAI-compatible server in Settings → Model.</source>
            <translation>在“设置 → 模型”中让 Bubble 连接一个 OpenAI 兼容服务器。</translation>
        </message>
        <message>
            <source>Recommended models (this computer has %1 GB of memory)</source>
            <translation>推荐模型（本机内存 %1 GB）</translation>
        </message>
        <message>
            <source>Recommended models</source>
            <translation>推荐模型</translation>
        </message>
        <message>
            <source>Model</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Memory needed</source>
            <translation>所需内存</translation>
        </message>
        <message>
            <source>Languages</source>
            <translation>语言</translation>
        </message>
        <message>
            <source>Notes</source>
            <translation>说明</translation>
        </message>
        <message>
            <source>Double-click a model to open its page; download it with its files, then choose its folder.</source>
            <translation>双击模型可打开其主页；下载模型及其全部文件后，再选择它所在的文件夹。</translation>
        </message>
        <message>
            <source>Probably too big for this computer's memory</source>
            <translation>对本机内存来说可能太大</translation>
        </message>
        <message>
            <source>(runs its own code: you will be asked first)</source>
            <translation>（会运行模型自带的代码：运行前会先征求你的同意）</translation>
        </message>
        <message>
            <source>too big</source>
            <translation>太大</translation>
        </message>
        <message>
            <source>On this computer</source>
            <translation>在本机</translation>
        </message>
        <message>
            <source>Double-click a model to see it on the Models page and download it.</source>
            <translation>双击模型可在“模型”页面查看并下载。</translation>
        </message>
        <message>
            <source>Download the recommended model: %1 (%2)</source>
            <translation>下载推荐的模型：%1（%2）</translation>
        </message>
        <message>
            <source>Nothing is downloaded until you click. It then runs on this computer.</source>
            <translation>点击之前不会下载任何内容。下载后模型在本机运行。</translation>
        </message>
        <message>
            <source>Choose a model folder</source>
            <translation>选择模型文件夹</translation>
        </message>
        <message>
            <source>Open a GGUF file</source>
            <translation>打开 GGUF 文件</translation>
        </message>
        <message>
            <source>GGUF models (*.gguf);;All files (*)</source>
            <translation>GGUF 模型 (*.gguf);;所有文件 (*)</translation>
        </message>
    </context>
    <context>
        <name>InferenceWorker</name>
        <message>
            <source>Loading was cancelled.</source>
            <translation>已取消加载。</translation>
        </message>
        <message>
            <source>Details are in the log file.</source>
            <translation>详细信息已写入日志文件。</translation>
        </message>
        <message>
            <source>No model is loaded.</source>
            <translation>尚未加载模型。</translation>
        </message>
        <message>
            <source>Choose a model first.</source>
            <translation>请先选择一个模型。</translation>
        </message>
    </context>
    <context>
        <name>KnowledgeTab</name>
        <message>
            <source>The knowledge base shown below; files you add go into it.</source>
            <translation>下方显示的知识库；添加的文件会放入其中。</translation>
        </message>
        <message>
            <source>New…</source>
            <translation>新建…</translation>
        </message>
        <message>
            <source>Rename…</source>
            <translation>重命名…</translation>
        </message>
        <message>
            <source>Delete</source>
            <translation>删除</translation>
        </message>
        <message>
            <source>Delete this knowledge base and its index (your files stay).</source>
            <translation>删除此知识库及其索引（你的文件不会被删除）。</translation>
        </message>
        <message>
            <source>Knowledge base:</source>
            <translation>知识库：</translation>
        </message>
        <message>
            <source>Add files…</source>
            <translation>添加文件…</translation>
        </message>
        <message>
            <source>Add folder…</source>
            <translation>添加文件夹…</translation>
        </message>
        <message>
            <source>Remove selected</source>
            <translation>移除所选</translation>
        </message>
        <message>
            <source>Take the selected documents out of the index (your files stay).</source>
            <translation>把所选文档从索引中移除（你的文件不会被删除）。</translation>
        </message>
        <message>
            <source>Re-index</source>
            <translation>重建索引</translation>
        </message>
        <message>
            <source>Index every document again, e.g. after changing the embedding model or chunk size.</source>
            <translation>重新索引所有文档，例如在更换嵌入模型或分块大小之后。</translation>
        </message>
        <message>
            <source>Drag files or folders anywhere onto this tab to add them: text, Markdown, PDF, Word, HTML, CSV, JSONL.</source>
            <translation>把文件或文件夹拖到本页任意位置即可添加：支持文本、Markdown、PDF、Word、HTML、CSV、JSONL。</translation>
        </message>
        <message>
            <source>Cancel</source>
            <translation>取消</translation>
        </message>
        <message>
            <source>Stop after the current batch; what is indexed so far is kept.</source>
            <translation>处理完当前这一批后停止；已索引的内容会保留。</translation>
        </message>
        <message>
            <source>Try a question…</source>
            <translation>输入一个问题试试…</translation>
        </message>
        <message>
            <source>Search</source>
            <translation>搜索</translation>
        </message>
        <message>
            <source>Test search</source>
            <translation>试搜索</translation>
        </message>
        <message>
            <source>See which passages a question finds, and how well they score.</source>
            <translation>看看一个问题能找到哪些段落，以及它们的得分。</translation>
        </message>
        <message>
            <source>page %1</source>
            <translation>第 %1 页</translation>
        </message>
        <message>
            <source>line %1</source>
            <translation>第 %1 行</translation>
        </message>
        <message>
            <source>row %1</source>
            <translation>第 %1 行</translation>
        </message>
        <message>
            <source>paragraph %1</source>
            <translation>第 %1 段</translation>
        </message>
        <message>
            <source>item %1</source>
            <translation>第 %1 项</translation>
        </message>
        <message>
            <source>section %1</source>
            <translation>第 %1 节</translation>
        </message>
        <message>
            <source>Drop files or folders here</source>
            <translation>把文件或文件夹拖到这里</translation>
        </message>
        <message>
            <source>Click a source to open its file.</source>
            <translation>点击来源可打开对应文件。</translation>
        </message>
        <message>
            <source>Delete knowledge base</source>
            <translation>删除知识库</translation>
        </message>
        <message>
            <source>Delete the knowledge base “%1” and its index? Your files are not touched.</source>
            <translation>要删除知识库“%1”及其索引吗？你的文件不会受影响。</translation>
        </message>
        <message>
            <source>Searching…</source>
            <translation>正在搜索…</translation>
        </message>
        <message>
            <source>No knowledge base yet: drop files here to create one.</source>
            <translation>还没有知识库：把文件拖到这里即可创建。</translation>
        </message>
        <message>
            <source>%1 documents · %2 chunks</source>
            <translation>%1 个文档 · %2 个片段</translation>
        </message>
        <message>
            <source>Preparing to index into “%1”…</source>
            <translation>正在准备索引到“%1”…</translation>
        </message>
        <message>
            <source>%v of %m files</source>
            <translation>%v / %m 个文件</translation>
        </message>
        <message>
            <source>%v of 1 file</source>
            <translation>%v / 1 个文件</translation>
        </message>
        <message>
            <source>Indexing %1</source>
            <translation>正在索引 %1</translation>
        </message>
        <message>
            <source>%1 chunks</source>
            <translation>%1 个片段</translation>
        </message>
        <message>
            <source>%1 chunks/s</source>
            <translation>%1 片段/秒</translation>
        </message>
        <message>
            <source>about %1 left</source>
            <translation>约剩 %1</translation>
        </message>
        <message>
            <source>%1 indexed, %2 unchanged, %3 failed, %4 chunks added in %5 s.</source>
            <translation>已索引 %1 个，未变化 %2 个，失败 %3 个，用时 %5 秒新增 %4 个片段。</translation>
        </message>
        <message>
            <source>Re-index cancelled — the current index is unchanged.</source>
            <translation>已取消重建索引——当前索引保持不变。</translation>
        </message>
        <message>
            <source>Cancelled — what was indexed so far is kept.</source>
            <translation>已取消——已索引的内容会保留。</translation>
        </message>
        <message>
            <source>Nothing found for “%1”.</source>
            <translation>没有找到与“%1”相关的内容。</translation>
        </message>
        <message>
            <source>Top %1 passages for “%2”:</source>
            <translation>与“%2”最相关的 %1 个段落：</translation>
        </message>
        <message>
            <source>1 file could not be indexed:</source>
            <translation>1 个文件无法索引：</translation>
        </message>
        <message>
            <source>%1 files could not be indexed:</source>
            <translation>%1 个文件无法索引：</translation>
        </message>
        <message>
            <source>New knowledge base</source>
            <translation>新建知识库</translation>
        </message>
        <message>
            <source>Name:</source>
            <translation>名称：</translation>
        </message>
        <message>
            <source>Rename knowledge base</source>
            <translation>重命名知识库</translation>
        </message>
        <message>
            <source>New name:</source>
            <translation>新名称：</translation>
        </message>
        <message>
            <source>Add files</source>
            <translation>添加文件</translation>
        </message>
        <message>
            <source>Documents (*.txt *.md *.markdown *.pdf *.docx *.html *.htm *.csv *.jsonl *.json);;All files (*)</source>
            <translation>文档 (*.txt *.md *.markdown *.pdf *.docx *.html *.htm *.csv *.jsonl *.json);;所有文件 (*)</translation>
        </message>
        <message>
            <source>Add folder</source>
            <translation>添加文件夹</translation>
        </message>
        <message>
            <source>Re-index knowledge base</source>
            <translation>重建知识库索引</translation>
        </message>
        <message>
            <source>Read and embed every document of “%1” again? This can take a while. Search keeps answering from the current index until the new one is complete; if you cancel, the current index stays as it is.</source>
            <translation>要重新读取并嵌入“%1”中的所有文档吗？这可能需要一些时间。新索引完成之前，搜索仍使用当前索引；如果取消，当前索引保持不变。</translation>
        </message>
        <message>
            <source>Cancelling after the current batch…</source>
            <translation>将在当前这一批完成后取消…</translation>
        </message>
        <message>
            <source>%1 s</source>
            <translation>%1 秒</translation>
        </message>
        <message>
            <source>%1 min %2 s</source>
            <translation>%1 分 %2 秒</translation>
        </message>
        <message>
            <source>%1 min</source>
            <translation>%1 分钟</translation>
        </message>
        <message>
            <source>%1 h %2 min</source>
            <translation>%1 小时 %2 分</translation>
        </message>
    </context>
    <context>
        <name>MainWindow</name>
        <message>
            <source>Chat</source>
            <translation>对话</translation>
        </message>
        <message>
            <source>Knowledge</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>Opening your knowledge bases…</source>
            <translation>正在打开你的知识库…</translation>
        </message>
        <message>
            <source>Knowledge bases are not available.</source>
            <translation>知识库当前不可用。</translation>
        </message>
        <message>
            <source>&amp;File</source>
            <translation>文件(&amp;F)</translation>
        </message>
        <message>
            <source>&amp;New chat</source>
            <translation>新对话(&amp;N)</translation>
        </message>
        <message>
            <source>&amp;Models…</source>
            <translation>模型(&amp;M)…</translation>
        </message>
        <message>
            <source>Choose &amp;model folder…</source>
            <translation>选择模型文件夹(&amp;M)…</translation>
        </message>
        <message>
            <source>&amp;Open GGUF file…</source>
            <translation>打开 GGUF 文件(&amp;O)…</translation>
        </message>
        <message>
            <source>Con&amp;vert GGUF to a transformers model (for LoRA)…</source>
            <translation>将 GGUF 转换为 transformers 模型（用于 LoRA）(&amp;V)…</translation>
        </message>
        <message>
            <source>&amp;Reload model</source>
            <translation>重新加载模型(&amp;R)</translation>
        </message>
        <message>
            <source>&amp;Quit</source>
            <translation>退出(&amp;Q)</translation>
        </message>
        <message>
            <source>&amp;Tools</source>
            <translation>工具(&amp;T)</translation>
        </message>
        <message>
            <source>&amp;Settings…</source>
            <translation>设置(&amp;S)…</translation>
        </message>
        <message>
            <source>Open &amp;data folder</source>
            <translation>打开数据文件夹(&amp;D)</translation>
        </message>
        <message>
            <source>&amp;Help</source>
            <translation>帮助(&amp;H)</translation>
        </message>
        <message>
            <source>&amp;About O.Bubble</source>
            <translation>关于 O.Bubble(&amp;A)</translation>
        </message>
        <message>
            <source>Knowledge bases could not be opened: %1</source>
            <translation>无法打开知识库：%1</translation>
        </message>
        <message>
            <source>The model could not be loaded</source>
            <translation>无法加载模型</translation>
        </message>
        <message>
            <source>Run this model's own code?</source>
            <translation>要运行这个模型自带的代码吗？</translation>
        </message>
        <message>
            <source>The model in %1 ships its own Python code (for example ChatGLM). Running it gives that code the same access to your computer as Bubble has.</source>
            <translation>%1 中的模型自带 Python 代码（例如 ChatGLM）。运行它意味着这些代码将拥有与 Bubble 相同的电脑访问权限。</translation>
        </message>
        <message>
            <source>Only allow this for models from publishers you trust. Bubble remembers your choice for this folder.</source>
            <translation>请只对你信任的发布者的模型允许此操作。Bubble 会记住你对这个文件夹的选择。</translation>
        </message>
        <message>
            <source>Allow and load</source>
            <translation>允许并加载</translation>
        </message>
        <message>
            <source>Convert a GGUF file</source>
            <translation>转换 GGUF 文件</translation>
        </message>
        <message>
            <source>GGUF models (*.gguf);;All files (*)</source>
            <translation>GGUF 模型 (*.gguf);;所有文件 (*)</translation>
        </message>
        <message>
            <source>Importing %1</source>
            <translation>正在导入 %1</translation>
        </message>
        <message>
            <source>Importing GGUF: %1</source>
            <translation>正在导入 GGUF：%1</translation>
        </message>
        <message>
            <source>Imported into %1</source>
            <translation>已导入到 %1</translation>
        </message>
        <message>
            <source>runs well</source>
            <translation>运行流畅</translation>
        </message>
        <message>
            <source>tight</source>
            <translation>勉强可用</translation>
        </message>
        <message>
            <source>too big</source>
            <translation>太大</translation>
        </message>
        <message>
            <source>Downloading %1</source>
            <translation>正在下载 %1</translation>
        </message>
        <message>
            <source>Downloading %1: %2</source>
            <translation>正在下载 %1：%2</translation>
        </message>
        <message>
            <source>Downloaded %1</source>
            <translation>已下载 %1</translation>
        </message>
        <message>
            <source>Download of %1 failed: %2</source>
            <translation>%1 下载失败：%2</translation>
        </message>
        <message>
            <source>This answer failed.</source>
            <translation>这次回答失败了。</translation>
        </message>
        <message>
            <source>stopped</source>
            <translation>已停止</translation>
        </message>
        <message>
            <source>No model is loaded.</source>
            <translation>尚未加载模型。</translation>
        </message>
        <message>
            <source>Choose a model folder (File → Choose model folder…) or check Settings → Model.</source>
            <translation>请选择一个模型文件夹（文件 → 选择模型文件夹…），或检查“设置 → 模型”。</translation>
        </message>
        <message>
            <source>waiting for the model to load…</source>
            <translation>正在等待模型加载…</translation>
        </message>
        <message>
            <source>writing…</source>
            <translation>正在生成…</translation>
        </message>
        <message>
            <source>cut off at the token limit</source>
            <translation>已达到长度上限而截断</translation>
        </message>
        <message>
            <source>API server: %1</source>
            <translation>API 服务：%1</translation>
        </message>
        <message>
            <source>Settings could not be saved: %1</source>
            <translation>无法保存设置：%1</translation>
        </message>
        <message>
            <source>About O.Bubble</source>
            <translation>关于 O.Bubble</translation>
        </message>
        <message>
            <source>O.Bubble %1
A private chatbot that runs on your own computer.</source>
            <translation>O.Bubble %1
在你自己电脑上运行的私人聊天助手。</translation>
        </message>
        <message>
            <source>%1 tokens</source>
            <translation>%1 个词元</translation>
        </message>
        <message>
            <source>%1 tokens/s</source>
            <translation>%1 词元/秒</translation>
        </message>
        <message>
            <source>first token after %1 s</source>
            <translation>首个词元用时 %1 秒</translation>
        </message>
    </context>
    <context>
        <name>MessageBody</name>
        <message>
            <source>Copied</source>
            <translation>已复制</translation>
        </message>
    </context>
    <context>
        <name>MessageWidget</name>
        <message>
            <source>You</source>
            <translation>你</translation>
        </message>
        <message>
            <source>Bubble</source>
            <translation>Bubble</translation>
        </message>
        <message>
            <source>Copy</source>
            <translation>复制</translation>
        </message>
        <message>
            <source>Copy this message</source>
            <translation>复制这条消息</translation>
        </message>
        <message>
            <source>Edit</source>
            <translation>编辑</translation>
        </message>
        <message>
            <source>Edit this question and send it again</source>
            <translation>修改这个问题并重新发送</translation>
        </message>
        <message>
            <source>Regenerate</source>
            <translation>重新生成</translation>
        </message>
        <message>
            <source>Answer this question again</source>
            <translation>重新回答这个问题</translation>
        </message>
        <message>
            <source>writing…</source>
            <translation>正在生成…</translation>
        </message>
        <message>
            <source>web</source>
            <translation>网页</translation>
        </message>
        <message>
            <source>file</source>
            <translation>文件</translation>
        </message>
        <message>
            <source>Sources:</source>
            <translation>来源：</translation>
        </message>
    </context>
    <context>
        <name>ModelStatusBar</name>
        <message>
            <source>Model: not loaded</source>
            <translation>模型：未加载</translation>
        </message>
        <message>
            <source>Loading %1…</source>
            <translation>正在加载 %1…</translation>
        </message>
        <message>
            <source>%1 · ready on %2</source>
            <translation>%1 · 已就绪（%2）</translation>
        </message>
        <message>
            <source>%1
Precision: %2
Context window: %3 tokens</source>
            <translation>%1
精度：%2
上下文窗口：%3 个词元</translation>
        </message>
        <message>
            <source>API on %1</source>
            <translation>API 运行于 %1</translation>
        </message>
        <message>
            <source>OpenAI-compatible API: http://%1/v1 (Settings → API server)</source>
            <translation>OpenAI 兼容 API：http://%1/v1（设置 → API 服务）</translation>
        </message>
        <message>
            <source>Model: not loaded (%1)</source>
            <translation>模型：未加载（%1）</translation>
        </message>
        <message>
            <source>%1 tokens/s</source>
            <translation>%1 词元/秒</translation>
        </message>
        <message>
            <source>prompt %1 · answer %2 tokens</source>
            <translation>提示 %1 · 回答 %2 个词元</translation>
        </message>
    </context>
    <context>
        <name>ModelsDialog</name>
        <message>
            <source>Model</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Kind</source>
            <translation>类型</translation>
        </message>
        <message>
            <source>Download size</source>
            <translation>下载大小</translation>
        </message>
        <message>
            <source>Memory</source>
            <translation>内存</translation>
        </message>
        <message>
            <source>On this computer</source>
            <translation>在本机</translation>
        </message>
        <message>
            <source>Languages</source>
            <translation>语言</translation>
        </message>
        <message>
            <source>Licence</source>
            <translation>许可证</translation>
        </message>
        <message>
            <source>Models</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Bubble fetches nothing until you press Download. Files come from Hugging Face, its mirror or ModelScope, whichever answers (bubble-cli models sources sets the order).</source>
            <translation>在您点击“下载”之前，Bubble 不会获取任何内容。文件来自 Hugging Face、其镜像或 ModelScope 中可用的那一个（用 bubble-cli models sources 设置顺序）。</translation>
        </message>
        <message>
            <source>Chat and embedding</source>
            <translation>对话与嵌入</translation>
        </message>
        <message>
            <source>Chat models</source>
            <translation>对话模型</translation>
        </message>
        <message>
            <source>Embedding models</source>
            <translation>嵌入模型</translation>
        </message>
        <message>
            <source>Any language</source>
            <translation>任意语言</translation>
        </message>
        <message>
            <source>Chinese</source>
            <translation>中文</translation>
        </message>
        <message>
            <source>English</source>
            <translation>英文</translation>
        </message>
        <message>
            <source>Fits this computer</source>
            <translation>适合本机</translation>
        </message>
        <message>
            <source>Download</source>
            <translation>下载</translation>
        </message>
        <message>
            <source>Cancel download</source>
            <translation>取消下载</translation>
        </message>
        <message>
            <source>Use for chat</source>
            <translation>用于对话</translation>
        </message>
        <message>
            <source>Use for knowledge bases</source>
            <translation>用于知识库</translation>
        </message>
        <message>
            <source>Open folder</source>
            <translation>打开文件夹</translation>
        </message>
        <message>
            <source>Delete</source>
            <translation>删除</translation>
        </message>
        <message>
            <source>Close</source>
            <translation>关闭</translation>
        </message>
        <message>
            <source>runs well</source>
            <translation>运行流畅</translation>
        </message>
        <message>
            <source>tight</source>
            <translation>勉强可用</translation>
        </message>
        <message>
            <source>too big</source>
            <translation>太大</translation>
        </message>
        <message>
            <source>chat</source>
            <translation>对话</translation>
        </message>
        <message>
            <source>embedding</source>
            <translation>嵌入</translation>
        </message>
        <message>
            <source>Downloading %1…</source>
            <translation>正在下载 %1…</translation>
        </message>
        <message>
            <source>Delete model</source>
            <translation>删除模型</translation>
        </message>
        <message>
            <source>Delete the downloaded files of %1?</source>
            <translation>删除 %1 已下载的文件？</translation>
        </message>
        <message>
            <source>%1 is ready: %2</source>
            <translation>%1 已就绪：%2</translation>
        </message>
    </context>
    <context>
        <name>SettingsDialog</name>
        <message>
            <source>Built-in all-MiniLM-L6-v2</source>
            <translation>内置 all-MiniLM-L6-v2</translation>
        </message>
        <message>
            <source>Choose a folder…</source>
            <translation>选择文件夹…</translation>
        </message>
        <message>
            <source>Browse…</source>
            <translation>浏览…</translation>
        </message>
        <message>
            <source>Choose a folder or a .gguf file…</source>
            <translation>选择文件夹或 .gguf 文件…</translation>
        </message>
        <message>
            <source>Folder…</source>
            <translation>文件夹…</translation>
        </message>
        <message>
            <source>GGUF file…</source>
            <translation>GGUF 文件…</translation>
        </message>
        <message>
            <source>GGUF models (*.gguf);;All files (*)</source>
            <translation>GGUF 模型 (*.gguf);;所有文件 (*)</translation>
        </message>
        <message>
            <source>Settings</source>
            <translation>设置</translation>
        </message>
        <message>
            <source>Put every value on this page back to its default.</source>
            <translation>把本页的所有值恢复为默认值。</translation>
        </message>
        <message>
            <source>The new language is used after you restart O.Bubble.</source>
            <translation>新语言将在重新启动 O.Bubble 后生效。</translation>
        </message>
        <message>
            <source>Presets:</source>
            <translation>预设：</translation>
        </message>
        <message>
            <source>Settings file</source>
            <translation>设置文件</translation>
        </message>
        <message>
            <source>Data folder</source>
            <translation>数据文件夹</translation>
        </message>
        <message>
            <source>Knowledge bases</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>Models</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Cache</source>
            <translation>缓存</translation>
        </message>
        <message>
            <source>Logs</source>
            <translation>日志</translation>
        </message>
        <message>
            <source>Open data folder</source>
            <translation>打开数据文件夹</translation>
        </message>
        <message>
            <source>Set BUBBLE_HOME to keep everything in one folder (a portable install).</source>
            <translation>设置环境变量 BUBBLE_HOME 可把所有数据放在同一个文件夹中（便携安装）。</translation>
        </message>
        <message>
            <source>Fix the values marked in red first.</source>
            <translation>请先修正标红的值。</translation>
        </message>
        <message>
            <source>Point at a setting to see what it does.</source>
            <translation>把鼠标指向某个设置，即可查看它的作用。</translation>
        </message>
    </context>
    <context>
        <name>StartingView</name>
        <message>
            <source>Starting %1…</source>
            <translation>正在启动 %1…</translation>
        </message>
    </context>
    <context>
        <name>_TaskWorker</name>
        <message>
            <source>Cancelled.</source>
            <translation>已取消。</translation>
        </message>
        <message>
            <source>Details are in the log file.</source>
            <translation>详细信息已写入日志文件。</translation>
        </message>
    </context>
    <context>
        <name>settings</name>
        <message>
            <source>Auto</source>
            <translation>自动</translation>
        </message>
        <message>
            <source>CPU</source>
            <translation>CPU</translation>
        </message>
        <message>
            <source>NVIDIA GPU (CUDA)</source>
            <translation>NVIDIA 显卡（CUDA）</translation>
        </message>
        <message>
            <source>Apple GPU (MPS)</source>
            <translation>Apple 图形处理器（MPS）</translation>
        </message>
        <message>
            <source>None</source>
            <translation>无</translation>
        </message>
        <message>
            <source>8-bit</source>
            <translation>8 位</translation>
        </message>
        <message>
            <source>4-bit</source>
            <translation>4 位</translation>
        </message>
        <message>
            <source>On this computer (llama.cpp for .gguf, else transformers)</source>
            <translation>在本机运行（.gguf 用 llama.cpp，其他用 transformers）</translation>
        </message>
        <message>
            <source>OpenAI-compatible server</source>
            <translation>OpenAI 兼容服务器</translation>
        </message>
        <message>
            <source>News</source>
            <translation>新闻</translation>
        </message>
        <message>
            <source>Web pages</source>
            <translation>网页</translation>
        </message>
        <message>
            <source>Past day</source>
            <translation>过去一天</translation>
        </message>
        <message>
            <source>Past week</source>
            <translation>过去一周</translation>
        </message>
        <message>
            <source>Past month</source>
            <translation>过去一个月</translation>
        </message>
        <message>
            <source>Past year</source>
            <translation>过去一年</translation>
        </message>
        <message>
            <source>Any time</source>
            <translation>不限时间</translation>
        </message>
        <message>
            <source>Strict</source>
            <translation>严格</translation>
        </message>
        <message>
            <source>Moderate</source>
            <translation>适中</translation>
        </message>
        <message>
            <source>Always</source>
            <translation>总是</translation>
        </message>
        <message>
            <source>Never</source>
            <translation>从不</translation>
        </message>
        <message>
            <source>Off</source>
            <translation>关闭</translation>
        </message>
        <message>
            <source>System</source>
            <translation>跟随系统</translation>
        </message>
        <message>
            <source>Light</source>
            <translation>浅色</translation>
        </message>
        <message>
            <source>Dark</source>
            <translation>深色</translation>
        </message>
        <message>
            <source>Precise</source>
            <translation>精确</translation>
        </message>
        <message>
            <source>Balanced</source>
            <translation>均衡</translation>
        </message>
        <message>
            <source>Creative</source>
            <translation>创意</translation>
        </message>
        <message>
            <source>Repeatable, focused answers: always the most likely next word.</source>
            <translation>回答稳定、集中：每次都选最可能的下一个词。</translation>
        </message>
        <message>
            <source>A good default for conversation.</source>
            <translation>适合日常对话的默认设置。</translation>
        </message>
        <message>
            <source>More varied, surprising wording: for brainstorming and stories.</source>
            <translation>措辞更多变、更出人意料：适合头脑风暴和写故事。</translation>
        </message>
        <message>
            <source>chunk overlap must be smaller than chunk size</source>
            <translation>分块重叠必须小于分块大小</translation>
        </message>
        <message>
            <source>Model</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Sampling</source>
            <translation>采样</translation>
        </message>
        <message>
            <source>Knowledge</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>Web search</source>
            <translation>联网搜索</translation>
        </message>
        <message>
            <source>API server</source>
            <translation>API 服务</translation>
        </message>
        <message>
            <source>Appearance</source>
            <translation>外观</translation>
        </message>
        <message>
            <source>Data</source>
            <translation>数据</translation>
        </message>
        <message>
            <source>A folder with a chat model (config.json + weights), or a .gguf file (runs quantized through llama.cpp, no conversion).</source>
            <translation>包含对话模型的文件夹（config.json 和权重文件），或一个 .gguf 文件（通过 llama.cpp 以量化形式直接运行，无需转换）。</translation>
        </message>
        <message>
            <source>Device</source>
            <translation>运行设备</translation>
        </message>
        <message>
            <source>Where the model runs. Auto picks the GPU (CUDA or Apple MPS) when there is one, else the CPU.</source>
            <translation>模型在哪里运行。“自动”会在有显卡（CUDA 或 Apple MPS）时使用显卡，否则使用 CPU。</translation>
        </message>
        <message>
            <source>Precision</source>
            <translation>精度</translation>
        </message>
        <message>
            <source>Number format of the weights. Auto: bfloat16/float16 on a GPU, float32 on the CPU.</source>
            <translation>权重的数值格式。“自动”：显卡上用 bfloat16/float16，CPU 上用 float32。</translation>
        </message>
        <message>
            <source>Quantization</source>
            <translation>量化</translation>
        </message>
        <message>
            <source>Load the weights in 8 or 4 bits (bitsandbytes) to save GPU memory. Needs an NVIDIA GPU.</source>
            <translation>以 8 位或 4 位加载权重（bitsandbytes），节省显存。需要 NVIDIA 显卡。</translation>
        </message>
        <message>
            <source>LoRA adapter</source>
            <translation>LoRA 适配器</translation>
        </message>
        <message>
            <source>Optional folder with a PEFT/LoRA adapter applied on top of the model.</source>
            <translation>可选：包含 PEFT/LoRA 适配器的文件夹，会叠加在模型之上。</translation>
        </message>
        <message>
            <source>Context window</source>
            <translation>上下文窗口</translation>
        </message>
        <message>
            <source>Tokens the model can see at once. 0 reads it from the model's config.</source>
            <translation>模型一次能看到的词元数。0 表示从模型配置中读取。</translation>
        </message>
        <message>
            <source>CPU threads</source>
            <translation>CPU 线程数</translation>
        </message>
        <message>
            <source>Threads llama.cpp uses for GGUF models. 0 = the number of physical cores.</source>
            <translation>llama.cpp 运行 GGUF 模型所用的线程数。0 表示使用物理核心数。</translation>
        </message>
        <message>
            <source>Backend</source>
            <translation>运行方式</translation>
        </message>
        <message>
            <source>Run the model here (transformers), or send prompts to an OpenAI-compatible server you run yourself.</source>
            <translation>在本机运行模型（transformers），或把提示发送到你自己运行的 OpenAI 兼容服务器。</translation>
        </message>
        <message>
            <source>Server URL</source>
            <translation>服务器地址</translation>
        </message>
        <message>
            <source>OpenAI-compatible endpoint, e.g. http://gpu-box:8000/v1 (vLLM, llama.cpp server, TGI).</source>
            <translation>OpenAI 兼容的接口地址，例如 http://gpu-box:8000/v1（vLLM、llama.cpp server、TGI）。</translation>
        </message>
        <message>
            <source>Server model name</source>
            <translation>服务器上的模型名</translation>
        </message>
        <message>
            <source>The model name the server expects.</source>
            <translation>服务器要求填写的模型名称。</translation>
        </message>
        <message>
            <source>Server API key</source>
            <translation>服务器 API 密钥</translation>
        </message>
        <message>
            <source>Sent to your server only.</source>
            <translation>只会发送给你自己的服务器。</translation>
        </message>
        <message>
            <source>Temperature</source>
            <translation>温度</translation>
        </message>
        <message>
            <source>How adventurous the wording is. 0 always picks the most likely next word (repeatable answers); higher values give more varied, more surprising text.</source>
            <translation>控制措辞的大胆程度。0 表示总是选最可能的下一个词（回答可重复）；数值越高，文字越多样、越出人意料。</translation>
        </message>
        <message>
            <source>Top-p</source>
            <translation>Top-p（核采样）</translation>
        </message>
        <message>
            <source>Only consider the smallest set of next words whose probabilities add up to this share. Lower = safer, more focused.</source>
            <translation>只在概率之和达到该比例的最小候选词集合中选词。越低越稳妥、越集中。</translation>
        </message>
        <message>
            <source>Top-k</source>
            <translation>Top-k</translation>
        </message>
        <message>
            <source>Only consider the k most likely next words. 0 turns this limit off.</source>
            <translation>只考虑最可能的 k 个候选词。0 表示不限制。</translation>
        </message>
        <message>
            <source>Min-p</source>
            <translation>Min-p</translation>
        </message>
        <message>
            <source>Drop next words less likely than this share of the most likely one. 0 turns it off; 0.05 is a good start.</source>
            <translation>舍弃概率低于最可能词该比例的候选词。0 表示关闭；0.05 是不错的起点。</translation>
        </message>
        <message>
            <source>Repetition penalty</source>
            <translation>重复惩罚</translation>
        </message>
        <message>
            <source>Makes the model less likely to repeat itself (looks at the last 64 words it wrote). 1.0 = no penalty; above 1.1 it starts to avoid even the numbers it should cite.</source>
            <translation>让模型更少重复自己（只看它最近写出的 64 个词）。1.0 表示不惩罚；超过 1.1 时连应引用的编号也会被避开。</translation>
        </message>
        <message>
            <source>Max new tokens</source>
            <translation>最大生成长度</translation>
        </message>
        <message>
            <source>The longest answer, in tokens (a token is roughly ¾ of an English word or one Chinese character).</source>
            <translation>回答的最大长度，以词元计（一个词元大约相当于 ¾ 个英文单词或一个汉字）。</translation>
        </message>
        <message>
            <source>Seed</source>
            <translation>随机种子</translation>
        </message>
        <message>
            <source>The same seed and settings give the same answer again. -1 picks a new random seed each time.</source>
            <translation>相同的种子和设置会得到相同的回答。-1 表示每次随机选一个新种子。</translation>
        </message>
        <message>
            <source>System prompt</source>
            <translation>系统提示词</translation>
        </message>
        <message>
            <source>Instructions the model sees before every conversation.</source>
            <translation>每次对话前模型都会看到的指示。</translation>
        </message>
        <message>
            <source>Embedding model</source>
            <translation>嵌入模型</translation>
        </message>
        <message>
            <source>A sentence-transformers model id or folder. Empty uses the built-in all-MiniLM-L6-v2 (English; Chinese still works through keyword search). For Chinese documents a multilingual model such as bge-small-zh is better.</source>
            <translation>sentence-transformers 模型名或文件夹。留空则使用内置的 all-MiniLM-L6-v2（英文模型；中文仍可通过关键词检索找到）。中文文档建议使用多语言或中文模型，例如 bge-small-zh。</translation>
        </message>
        <message>
            <source>Chunk size</source>
            <translation>分块大小</translation>
        </message>
        <message>
            <source>Characters per piece of a document that is indexed and retrieved.</source>
            <translation>文档被切分成片段后，每个片段的字符数；按片段建立索引和检索。</translation>
        </message>
        <message>
            <source>Chunk overlap</source>
            <translation>分块重叠</translation>
        </message>
        <message>
            <source>Characters shared by neighbouring pieces, so a sentence cut at a boundary is still found.</source>
            <translation>相邻片段共享的字符数，这样在边界处被截断的句子也能被找到。</translation>
        </message>
        <message>
            <source>Sources per answer</source>
            <translation>每次回答的资料数</translation>
        </message>
        <message>
            <source>How many pieces of your documents are given to the model with each question.</source>
            <translation>每个问题会把多少个文档片段交给模型参考。</translation>
        </message>
        <message>
            <source>Minimum score</source>
            <translation>最低得分</translation>
        </message>
        <message>
            <source>Pieces scoring below this are not used. 0 keeps the best ones whatever their score.</source>
            <translation>得分低于此值的片段不会被使用。0 表示无论得分如何都保留最相关的片段。</translation>
        </message>
        <message>
            <source>Minimum relevance</source>
            <translation>最低相关度</translation>
        </message>
        <message>
            <source>Pieces that match the question less than this are not used or listed as sources, so a question your documents cannot answer gets none. 0 always uses the best pieces.</source>
            <translation>与问题的相关度低于此值的片段不会被使用，也不会列为来源；因此文档无法回答的问题不会附带来源。0 表示总是使用最相关的片段。</translation>
        </message>
        <message>
            <source>Hybrid search</source>
            <translation>混合检索</translation>
        </message>
        <message>
            <source>Combine meaning-based (dense) and keyword (BM25) search. Keeps Chinese retrieval working with English embedding models.</source>
            <translation>结合语义（稠密向量）检索和关键词（BM25）检索。即使使用英文嵌入模型，中文检索也能正常工作。</translation>
        </message>
        <message>
            <source>Qdrant server URL</source>
            <translation>Qdrant 服务器地址</translation>
        </message>
        <message>
            <source>Empty keeps the knowledge bases on this computer. A URL (e.g. http://localhost:6333) stores them on your own Qdrant server instead.</source>
            <translation>留空则知识库保存在本机。填写地址（例如 http://localhost:6333）则改为保存在你自己的 Qdrant 服务器上。</translation>
        </message>
        <message>
            <source>Qdrant API key</source>
            <translation>Qdrant API 密钥</translation>
        </message>
        <message>
            <source>For a Qdrant server that needs one.</source>
            <translation>Qdrant 服务器要求时填写。</translation>
        </message>
        <message>
            <source>Embedding threads</source>
            <translation>嵌入线程数</translation>
        </message>
        <message>
            <source>CPU threads used for embedding. 0 chooses automatically.</source>
            <translation>计算嵌入向量时使用的 CPU 线程数。0 表示自动选择。</translation>
        </message>
        <message>
            <source>OCR (text recognition)</source>
            <translation>OCR（文字识别）</translation>
        </message>
        <message>
            <source>Read scanned PDF pages and images by OCR. Auto: only pages without a usable text layer; always: every PDF page; never: skip scanned pages.</source>
            <translation>用 OCR 识别扫描的 PDF 页面和图片。自动：只识别没有可用文字层的页面；总是：识别每一页 PDF；从不：跳过扫描页面。</translation>
        </message>
        <message>
            <source>OCR page limit</source>
            <translation>OCR 页数上限</translation>
        </message>
        <message>
            <source>A file that needs OCR on more pages than this is refused (OCR takes about a second per page).</source>
            <translation>需要 OCR 的页数超过此值的文件将被拒绝（每页 OCR 约需一秒）。</translation>
        </message>
        <message>
            <source>Search the web</source>
            <translation>联网搜索</translation>
        </message>
        <message>
            <source>Send your question to DuckDuckGo and give fresh results to the model. Off by default: when on, the question leaves this computer.</source>
            <translation>把你的问题发送给 DuckDuckGo，并把最新结果交给模型。默认关闭：开启后，问题会离开本机。</translation>
        </message>
        <message>
            <source>Search type</source>
            <translation>搜索类型</translation>
        </message>
        <message>
            <source>News articles or general web pages.</source>
            <translation>新闻报道或普通网页。</translation>
        </message>
        <message>
            <source>Time range</source>
            <translation>时间范围</translation>
        </message>
        <message>
            <source>Only results from the past day, week, month or year.</source>
            <translation>只要过去一天、一周、一个月或一年内的结果。</translation>
        </message>
        <message>
            <source>Region</source>
            <translation>地区</translation>
        </message>
        <message>
            <source>Search region code, e.g. wt-wt (no region), cn-zh, us-en.</source>
            <translation>搜索地区代码，例如 wt-wt（不限地区）、cn-zh、us-en。</translation>
        </message>
        <message>
            <source>Safe search</source>
            <translation>安全搜索</translation>
        </message>
        <message>
            <source>Filter explicit results.</source>
            <translation>过滤不良内容。</translation>
        </message>
        <message>
            <source>Results</source>
            <translation>结果数</translation>
        </message>
        <message>
            <source>How many search results are given to the model.</source>
            <translation>交给模型参考的搜索结果条数。</translation>
        </message>
        <message>
            <source>Deadline (s)</source>
            <translation>超时（秒）</translation>
        </message>
        <message>
            <source>Give up on the web after this many seconds and answer without it.</source>
            <translation>超过这么多秒仍无结果就放弃联网，直接回答。</translation>
        </message>
        <message>
            <source>Proxy</source>
            <translation>代理</translation>
        </message>
        <message>
            <source>Optional proxy, e.g. socks5h://127.0.0.1:1080 or http://user:pass@host:port.</source>
            <translation>可选代理，例如 socks5h://127.0.0.1:1080 或 http://user:pass@host:port。</translation>
        </message>
        <message>
            <source>Serve the OpenAI-compatible API</source>
            <translation>提供 OpenAI 兼容 API</translation>
        </message>
        <message>
            <source>Let other programs on this computer (editors, scripts, browser extensions) use the loaded model and your knowledge bases through the OpenAI API. Off by default.</source>
            <translation>让本机上的其他程序（编辑器、脚本、浏览器扩展）通过 OpenAI API 使用已加载的模型和您的知识库。默认关闭。</translation>
        </message>
        <message>
            <source>Address</source>
            <translation>地址</translation>
        </message>
        <message>
            <source>127.0.0.1 = this computer only. Any other address lets other computers connect and needs an API key.</source>
            <translation>127.0.0.1 表示仅限本机。其他任何地址都允许其他计算机连接，并且必须设置 API 密钥。</translation>
        </message>
        <message>
            <source>Port</source>
            <translation>端口</translation>
        </message>
        <message>
            <source>The port programs connect to, e.g. http://127.0.0.1:8765/v1. 0 picks a free one.</source>
            <translation>程序连接的端口，例如 http://127.0.0.1:8765/v1。0 表示自动选择空闲端口。</translation>
        </message>
        <message>
            <source>API key</source>
            <translation>API 密钥</translation>
        </message>
        <message>
            <source>Clients must send it as a Bearer token. Required for any address other than 127.0.0.1.</source>
            <translation>客户端必须以 Bearer 令牌的形式发送它。地址不是 127.0.0.1 时必须设置。</translation>
        </message>
        <message>
            <source>Language</source>
            <translation>语言</translation>
        </message>
        <message>
            <source>Language of the app. System follows your computer's language.</source>
            <translation>界面语言。“跟随系统”会使用电脑的语言。</translation>
        </message>
        <message>
            <source>Theme</source>
            <translation>主题</translation>
        </message>
        <message>
            <source>Light or dark colours, or follow the system.</source>
            <translation>浅色或深色，或跟随系统。</translation>
        </message>
        <message>
            <source>Font size</source>
            <translation>字号</translation>
        </message>
        <message>
            <source>Text size in points in the chat.</source>
            <translation>对话中文字的大小（磅）。</translation>
        </message>
    </context>
</TS>
